"""Create the identity objects one local cloud needs, or check the cloud end to end.

    keystone_setup.py setup   # service/user projects, users, roles, image service + endpoints
    keystone_setup.py check   # a member token is issued and GET /v2/images answers 200

Talks to the Keystone REST API with the standard library only. The same work through
`openstack` commands costs 10-12 s of client start-ups per cloud; this takes well under
one second. Every step is get-or-create, so running it again repairs a partial setup and
re-points the catalog when the ports change.

Settings come from the environment (passwords stay out of the process list):
KS_URL (…/v3), GL_URL, REGION, ADMIN_PASSWORD, GLANCE_PASSWORD, MEMBER_USER,
MEMBER_PASSWORD, MEMBER_PROJECT.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ENV = os.environ
KS = ENV["KS_URL"].rstrip("/")
GL = ENV["GL_URL"].rstrip("/")
REGION = ENV["REGION"]


class HttpError(Exception):
    pass


def call(method, url, token=None, body=None, ok=(200, 201, 204)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, resp.headers, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        if e.code in ok:
            return e.code, e.headers, None
        excerpt = e.read()[:300].decode(errors="replace")
        raise HttpError(f"{method} {url} -> HTTP {e.code}: {excerpt}") from None


def token(user, password, project):
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}
    _, headers, _ = call("POST", f"{KS}/auth/tokens", body=body)
    tok = headers.get("X-Subject-Token")
    if not tok:
        raise HttpError(f"no X-Subject-Token from {KS}/auth/tokens for user {user}")
    return tok


def find(tok, collection, **query):
    q = urllib.parse.urlencode(query)
    _, _, body = call("GET", f"{KS}/{collection}?{q}", tok)
    return body[collection]


def ensure(tok, collection, key, query, fields):
    """Return the id of the one object matching query, creating it from fields if absent."""
    found = find(tok, collection, **query)
    if found:
        return found[0]["id"]
    _, _, body = call("POST", f"{KS}/{collection}", tok, {key: fields})
    return body[key]["id"]


def setup():
    tok = token("admin", ENV["ADMIN_PASSWORD"], "admin")
    dom = "default"
    service_p = ensure(tok, "projects", "project", {"name": "service", "domain_id": dom},
                       {"name": "service", "domain_id": dom})
    member_p = ensure(tok, "projects", "project",
                      {"name": ENV["MEMBER_PROJECT"], "domain_id": dom},
                      {"name": ENV["MEMBER_PROJECT"], "domain_id": dom})
    glance_u = ensure(tok, "users", "user", {"name": "glance", "domain_id": dom},
                      {"name": "glance", "domain_id": dom, "password": ENV["GLANCE_PASSWORD"],
                       "default_project_id": service_p})
    member_u = ensure(tok, "users", "user", {"name": ENV["MEMBER_USER"], "domain_id": dom},
                      {"name": ENV["MEMBER_USER"], "domain_id": dom,
                       "password": ENV["MEMBER_PASSWORD"], "default_project_id": member_p})
    role = {n: ensure(tok, "roles", "role", {"name": n}, {"name": n})
            for n in ("admin", "service", "member")}
    for project, user, r in ((service_p, glance_u, "admin"), (service_p, glance_u, "service"),
                             (member_p, member_u, "member")):
        call("PUT", f"{KS}/projects/{project}/users/{user}/roles/{role[r]}", tok)

    image_s = ensure(tok, "services", "service", {"type": "image"},
                     {"type": "image", "name": "glance", "enabled": True})
    identity_s = find(tok, "services", type="identity")[0]["id"]
    # Glance's internal endpoint and a second region's public one may name the same server
    # by another address (GL_INTERNAL_URL, SECOND_REGION + GL_SECOND_URL), so the tests can
    # tell which endpoint a client picked.
    endpoints = [(image_s, i, GL, REGION) for i in ("public", "admin")]
    endpoints.append((image_s, "internal", ENV.get("GL_INTERNAL_URL") or GL, REGION))
    endpoints += [(identity_s, i, KS, REGION) for i in ("public", "internal", "admin")]
    second = ENV.get("SECOND_REGION")
    if second and ENV.get("GL_SECOND_URL"):
        if not any(r["id"] == second for r in find(tok, "regions")):
            call("POST", f"{KS}/regions", tok, {"region": {"id": second}})
        endpoints.append((image_s, "public", ENV["GL_SECOND_URL"], second))
    for service, interface, url, region in endpoints:
        eps = find(tok, "endpoints", service_id=service, interface=interface, region_id=region)
        eps = [e for e in eps if e.get("region_id") == region]
        if not eps:
            call("POST", f"{KS}/endpoints", tok, {"endpoint": {
                "service_id": service, "interface": interface, "url": url,
                "region_id": region, "enabled": True}})
        elif eps[0]["url"] != url:  # ports or addresses changed since the last start
            call("PATCH", f"{KS}/endpoints/{eps[0]['id']}", tok,
                 {"endpoint": {"url": url}})


def check(timeout=60.0):
    tok = token(ENV["MEMBER_USER"], ENV["MEMBER_PASSWORD"], ENV["MEMBER_PROJECT"])
    deadline = time.monotonic() + timeout
    while True:
        # glance's keystonemiddleware fetches its own service token on the first request
        try:
            status, _, body = call("GET", f"{GL}/v2/images", tok)
            if status == 200 and "images" in body:
                return
            err = f"HTTP {status}"
        except (HttpError, OSError) as e:
            err = str(e)
        if time.monotonic() > deadline:
            raise HttpError(f"GET {GL}/v2/images with a member token failed: {err}")
        time.sleep(0.2)


if __name__ == "__main__":
    try:
        {"setup": setup, "check": check}[sys.argv[1]]()
    except (HttpError, OSError, KeyError, IndexError) as e:
        print(f"keystone_setup.py {' '.join(sys.argv[1:])}: {e!r}", file=sys.stderr)
        sys.exit(1)
