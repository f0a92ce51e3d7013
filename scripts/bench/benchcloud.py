"""The local Glance around the measured clients: token, create, check, delete, and the
clean-up of every image a benchmark made (names starting with `hephaestus-bench-`).

Shared by the `make bench` runners (publish.py, promote.py, two_clouds.py, concurrency.py,
rerun.py). Glance is reached with urllib; the token comes from `openstack token issue` and is
issued again after half an hour, so a long benchmark outlives Keystone's one-hour tokens.
"""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

PREFIX = "hephaestus-bench-"


class Glance:
    """The few Glance calls the benchmark makes around the measured clients."""

    def __init__(self, openstack: str, cloud: str):
        self.openstack = [openstack, "--os-cloud", cloud]
        self.cloud = cloud
        self._issue()
        catalog = json.loads(self._cli("catalog", "show", "image", "-f", "json"))
        public = [e for e in catalog["endpoints"] if e["interface"] == "public"]
        self.url = public[0]["url"].rstrip("/")

    def _cli(self, *args) -> str:
        res = subprocess.run(
            [*self.openstack, *args], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            raise SystemExit(
                f"bench: openstack {' '.join(args[:2])}: exit status {res.returncode}\n"
                + "\n".join(res.stderr.splitlines()[-10:])
            )
        return res.stdout

    def _issue(self) -> None:
        self.token = self._cli("token", "issue", "-f", "value", "-c", "id").strip()
        self.issued = time.monotonic()

    def call(self, method: str, path: str, body=None):
        if time.monotonic() - self.issued > 1800:
            self._issue()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-Auth-Token", self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = resp.read()
        except urllib.error.HTTPError as e:
            raise SystemExit(f"bench: {self.cloud}: {method} {path}: HTTP {e.code}") from None
        return json.loads(text) if text else None

    def create(self, name: str) -> str:
        body = {
            "name": name,
            "disk_format": "qcow2",
            "container_format": "bare",
            "visibility": "private",
        }
        return self.call("POST", "/v2/images", body)["id"]

    def get(self, image_id: str) -> dict:
        return self.call("GET", f"/v2/images/{image_id}")

    def delete(self, image_id: str) -> None:
        self.call("DELETE", f"/v2/images/{image_id}")

    def leftovers(self) -> list:
        out = []
        for hidden in ("false", "true"):
            images = self.call("GET", f"/v2/images?limit=1000&os_hidden={hidden}")
            out += [i["id"] for i in images["images"] if i["name"].startswith(PREFIX)]
        return out


def check_active(glance: Glance, image_id: str, size: int, who: str) -> None:
    img = glance.get(image_id)
    if img["status"] != "active" or img["size"] != size:
        raise SystemExit(
            f"bench: {who}: image {image_id} is {img['status']} with size {img['size']}, "
            f"expected active with {size}"
        )


def clear(glance: Glance, note: str = "") -> int:
    """Deletes every benchmark image of `glance`; returns how many there were."""
    ids = glance.leftovers()
    for image_id in ids:
        if note:
            print(f"  deleting {image_id} in {glance.cloud}{note}", file=sys.stderr, flush=True)
        glance.delete(image_id)
    return len(ids)


class ReportError(Exception):
    """A run report that does not say what the benchmark needs."""


def published(img: dict, clouds: list, size: int) -> dict:
    """Checks that one image entry of a `pipeline run --report` published `size` bytes into
    every cloud of `clouds`; returns {cloud: image id}.

    With several clouds the entry must have the list `clouds`, one
    {"cloud", "status", "image_id", "bytes_sent", "error"} per cloud, and the entry's own
    `status` is "published" only when every cloud published. With one cloud the entry's own
    `image_id` and `bytes_sent` are enough (a `clouds` list, when there, must agree)."""
    who = img.get("profile", "?")
    if img.get("status") != "published":
        raise ReportError(f"{who}: status {img.get('status')!r}, error {img.get('error')!r}"
                          + (f", clouds {json.dumps(img['clouds'])[:300]}"
                             if img.get("clouds") else ""))
    per_cloud = img.get("clouds")
    if per_cloud is None:
        if len(clouds) > 1:
            raise ReportError(
                f"{who}: the run report has no `clouds` list in its image entry, so this "
                f"pipeline does not publish one build into several clouds yet (--cloud "
                f"{' --cloud '.join(clouds)})"
            )
        if img.get("bytes_sent") != size or not img.get("image_id"):
            raise ReportError(f"{who}: sent {img.get('bytes_sent')} bytes of {size}")
        return {clouds[0]: img["image_id"]}
    got = {c.get("cloud"): c for c in per_cloud}
    if sorted(got) != sorted(clouds) or len(per_cloud) != len(clouds):
        raise ReportError(f"{who}: `clouds` names {[c.get('cloud') for c in per_cloud]}, "
                          f"expected {clouds}")
    ids = {}
    for name in clouds:
        c = got[name]
        if (c.get("status") != "published" or c.get("bytes_sent") != size
                or c.get("error") is not None or not c.get("image_id")):
            raise ReportError(f"{who}: {name}: {json.dumps(c)[:300]} (expected published, "
                              f"{size} bytes sent, no error)")
        ids[name] = c["image_id"]
    return ids
