"""`make bench` part 2: publish one file into Glance with `pipeline run`, `curl -T -` and
`openstack image create --file`, alternating rounds, and compare what each client costs.

Every image created here is deleted right after it has been measured (and, at start and end,
any image left by an interrupted earlier run: names starting with `hephaestus-bench-`).
The token is passed to curl in a header file (mode 0600), never on a command line.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import measure

PREFIX = "hephaestus-bench-"


class Glance:
    """The few Glance calls the benchmark makes around the measured clients."""

    def __init__(self, openstack: str, cloud: str):
        self.openstack = [openstack, "--os-cloud", cloud]
        self.token = self._cli("token", "issue", "-f", "value", "-c", "id").strip()
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

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("X-Auth-Token", self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = resp.read()
        except urllib.error.HTTPError as e:
            raise SystemExit(f"bench: {method} {path}: HTTP {e.code}") from None
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--pipeline-file", required=True)
    p.add_argument("--flake", required=True)
    p.add_argument("--cloud", default="local")
    p.add_argument("--openstack", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    size = os.path.getsize(args.image)
    glance = Glance(args.openstack, args.cloud)
    for image_id in glance.leftovers():
        measure.progress(f"  deleting {image_id}, left by an earlier run")
        glance.delete(image_id)

    tmp = tempfile.mkdtemp(prefix="bench-publish-")
    header = os.path.join(tmp, "auth-header")
    fd = os.open(header, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"X-Auth-Token: {glance.token}\n")
    report_path = os.path.join(tmp, "report.json")
    stages = {"verify": [], "upload": [], "other": []}
    log_dir = os.path.dirname(os.path.abspath(args.out))

    def pipeline_run(r):
        argv = [args.pipeline, "--root", args.root, "run", args.pipeline_file,
                "--cloud", args.cloud, "--flake", args.flake, "--report", report_path]
        s = measure.run(argv)
        with open(os.path.join(log_dir, f"publish-pipeline-{r + 1}.log"), "w") as f:
            f.write(s.stderr)
        with open(report_path) as f:
            report = json.load(f)
        img = report["images"][0]
        if img["status"] != "published" or img["bytes_sent"] != size:
            raise SystemExit(f"bench: pipeline did not publish: {json.dumps(img)[:400]}")
        for st in img["stages"]:
            if st["stage"] in stages:
                stages[st["stage"]].append(st["seconds"])
        stages["other"].append(s.wall - sum(st["seconds"] for st in img["stages"]))
        check_active(glance, img["image_id"], size, "pipeline")
        glance.delete(img["image_id"])
        return s

    def curl_put(r):
        image_id = glance.create(f"{PREFIX}curl-{r}")
        try:
            # Expect: 100-continue would add curl's fixed 1 s wait before the body.
            argv = ["curl", "-sS", "-f", "-o", "/dev/null", "-H", f"@{header}",
                    "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
                    "-T", "-", f"{glance.url}/v2/images/{image_id}/file"]
            s = measure.run(argv, stdin_path=args.image)
            check_active(glance, image_id, size, "curl")
        finally:
            glance.delete(image_id)
        return s

    def cli_create(r):
        argv = [args.openstack, "--os-cloud", args.cloud, "image", "create",
                "--file", args.image, "--disk-format", "qcow2", "--container-format",
                "bare", "--private", "-f", "value", "-c", "id", f"{PREFIX}cli-{r}"]
        try:
            s = measure.run(argv)
        except measure.CommandFailed:
            for image_id in glance.leftovers():
                glance.delete(image_id)
            raise
        image_id = s.stdout.strip()
        try:
            check_active(glance, image_id, size, "openstack image create")
        finally:
            glance.delete(image_id)
        return s

    names = {
        "pipeline": "pipeline run (evaluate…upload)",
        "curl": "curl -T - (chunked PUT /file)",
        "cli": "openstack image create --file",
    }
    todo = [("pipeline", pipeline_run), ("curl", curl_put), ("cli", cli_create)]
    results = {k: measure.Summary(names[k], []) for k, _ in todo}
    load_before = measure.machine_line()
    try:
        for r in range(args.rounds):
            order = todo[r % len(todo):] + todo[: r % len(todo)]
            for key, fn in order:
                s = fn(r)
                results[key].samples.append(s)
                measure.progress(
                    f"  round {r + 1}/{args.rounds}  {names[key]:<32} {s.wall:6.2f} s  "
                    f"cpu {s.cpu:5.2f} s  rss {s.own_rss_kib / 1024:6.1f} MiB  "
                    f"read {s.rchar / measure.MIB:6.0f} MiB"
                )
    except measure.CommandFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        for image_id in glance.leftovers():
            glance.delete(image_id)
        shutil.rmtree(tmp, ignore_errors=True)

    mib = size / measure.MIB
    rows = []
    for s in results.values():
        rows.append([
            s.name,
            f"{s.wall:.2f} ({s.wall_min:.2f}–{s.wall_max:.2f})",
            f"{mib / s.wall:.0f}",
            f"{s.cpu:.2f}",
            f"{s.own_rss_mib:.1f}",
            f"{s.rss_mib:.1f}",
            f"{s.rchar_mib:.0f}",
            f"{s.read_bytes_mib:.0f}",
        ])
    up = statistics.median(stages["upload"])
    ver = statistics.median(stages["verify"])
    rows.append(["  of which: upload stage (run report)", f"{up:.2f}", f"{mib / up:.0f}",
                 "", "", "", "", ""])
    rows.append(["  of which: verify stage (run report)", f"{ver:.2f}", "", "", "", "", "",
                 ""])
    other = statistics.median(stages["other"])
    rows.append(["  of which: outside the stages", f"{other:.2f}", "", "", "", "", "", ""])
    table = measure.markdown_table(
        ["client", "wall s, median (min–max)", "MiB/s", "user+sys s", "peak RSS MiB",
         "with children", "read() MiB", "disk MiB"],
        rows,
    )
    pl, cu, cli = results["pipeline"], results["curl"], results["cli"]
    ratios = "\n".join([
        f"- pipeline upload stage vs curl: wall {up / cu.wall:.2f}×",
        f"- whole `pipeline run` (evaluate, no-op build, verify, upload) vs curl: "
        f"wall {pl.wall / cu.wall:.2f}×, CPU {pl.cpu / cu.cpu:.2f}×",
        f"- pipeline upload stage vs openstack image create: wall {up / cli.wall:.2f}×; "
        f"whole run: {pl.wall / cli.wall:.2f}×, CPU {pl.cpu / cli.cpu:.2f}×",
        f"- curl vs openstack image create: wall {cu.wall / cli.wall:.2f}×",
    ])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""# publish benchmark ({now})

File: the {mib:.0f} MiB qcow2 ({size} bytes, random guest data, GPT + ESP) published into the
local Glance (cloud `{args.cloud}`: Keystone + Glance on 127.0.0.1, file store, one worker)
{args.rounds} times by each client, rounds alternating, page cache warm. Each image is checked
`active` with the right size and then deleted.

Machine: {load_before} before, {measure.machine_line().split(", load average ")[1]} after.

{table}

{ratios}

What each client does: `pipeline run` = the whole run of a one-profile pipeline (nix
evaluation, a build that is already done, tag, verify = qcow2 + partition table + NAR hash +
md5/sha256/sha512, then upload = create hidden candidate, stream PUT /file, wait active,
compare Glance's hashes, make current); its stage times come from its `--report`, "outside
the stages" is the rest of its wall time (start-up, authentication, nix evaluation of the
flake, the report); its log of each round is in publish-pipeline-N.log beside this file. `curl` =
only the PUT of the bytes into an image created beforehand (the POST is not timed; token from
`openstack token issue`). `openstack image create` = the whole CLI process (start-up, auth,
create, upload).

Columns: wall = median elapsed time; MiB/s = file size / wall; user+sys = CPU time of the
client and its children (GNU time); peak RSS = the client process alone (VmHWM sampled every
50 ms), "with children" = GNU time's figure including child processes (the `nix` commands
`pipeline` runs); read() = `rchar` of /proc/PID/io (bytes returned by read calls, page-cache
hits included, children included: {mib:.0f} MiB = the file read once); disk = `read_bytes`
(from the block device). Glance's own CPU is not counted in any client's figures.
"""
    measure.write_report(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
