"""`make bench` part 2: publish one file into Glance with `pipeline run`, `curl -T -` and
`openstack image create --file`, alternating rounds, and compare what each client costs, for
each image size given (one `--case` per size).

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
import sys
import tempfile

import measure
from benchcloud import PREFIX, Glance, check_active, clear

# The targets the table is held against.
TARGET_WALL_RATIO = 1.05  # whole `pipeline run` / curl's PUT, medians
TARGET_RSS_MIB = 64  # the pipeline process's own peak RSS, at every size
SAME_RSS_MIB = 4  # "the same at every size": peaks within this (VmHWM sampled every 50 ms)

NAMES = {
    "pipeline": "pipeline run (evaluate…upload)",
    "curl": "curl -T - (chunked PUT /file)",
    "cli": "openstack image create --file",
}


def size_label(size: int) -> str:
    gib = size / measure.MIB / 1024
    return f"{gib:.0f} GiB" if gib >= 1 else f"{size / measure.MIB:.0f} MiB"


def measure_case(args, glance, image, flake, tmp, log_dir, tag):
    """All rounds of the three clients for one image; returns (results, stages)."""
    size = os.path.getsize(image)
    header = os.path.join(tmp, "auth-header")
    report_path = os.path.join(tmp, "report.json")
    stages = {"verify": [], "upload": [], "other": []}

    def pipeline_run(r):
        argv = [args.pipeline, "--root", args.root, "run", args.pipeline_file,
                "--cloud", args.cloud, "--flake", flake, "--report", report_path]
        s = measure.run(argv)
        with open(os.path.join(log_dir, f"publish-{tag}-pipeline-{r + 1}.log"), "w") as f:
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
        clear(glance)  # the candidate and any earlier generation: the next run publishes anew
        return s

    def curl_put(r):
        image_id = glance.create(f"{PREFIX}curl-{r}")
        try:
            fd = os.open(header, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"X-Auth-Token: {glance.token}\n")
            # Expect: 100-continue would add curl's fixed 1 s wait before the body.
            argv = ["curl", "-sS", "-f", "-o", "/dev/null", "-H", f"@{header}",
                    "-H", "Content-Type: application/octet-stream", "-H", "Expect:",
                    "-T", "-", f"{glance.url}/v2/images/{image_id}/file"]
            s = measure.run(argv, stdin_path=image)
            check_active(glance, image_id, size, "curl")
        finally:
            glance.delete(image_id)
        return s

    def cli_create(r):
        argv = [args.openstack, "--os-cloud", args.cloud, "image", "create",
                "--file", image, "--disk-format", "qcow2", "--container-format",
                "bare", "--private", "-f", "value", "-c", "id", f"{PREFIX}cli-{r}"]
        try:
            s = measure.run(argv)
        except measure.CommandFailed:
            clear(glance)
            raise
        image_id = s.stdout.strip()
        try:
            check_active(glance, image_id, size, "openstack image create")
        finally:
            glance.delete(image_id)
        return s

    todo = [("pipeline", pipeline_run), ("curl", curl_put), ("cli", cli_create)]
    results = {k: measure.Summary(NAMES[k], []) for k, _ in todo}
    for r in range(args.rounds):
        order = todo[r % len(todo):] + todo[: r % len(todo)]
        for key, fn in order:
            s = fn(r)
            results[key].samples.append(s)
            measure.progress(
                f"  {size_label(size)} round {r + 1}/{args.rounds}  {NAMES[key]:<32} "
                f"{s.wall:6.2f} s  cpu {s.cpu:5.2f} s  servers {s.server_cpu:5.2f} s  rss {s.own_rss_kib / 1024:6.1f} MiB  "
                f"read {s.rchar / measure.MIB:6.0f} MiB"
            )
    return results, stages


def case_table(size, results, stages):
    mib = size / measure.MIB
    cu = results["curl"]
    rows = []
    for s in results.values():
        rows.append([
            s.name,
            f"{s.wall:.2f} ({s.wall_min:.2f}–{s.wall_max:.2f})",
            f"{s.wall / cu.wall:.2f}×",
            f"{mib / s.wall:.0f}",
            f"{s.cpu:.2f}",
            f"{s.server_cpu:.2f}",
            f"{s.cpu + s.server_cpu:.2f}",
            f"{s.own_rss_mib:.1f}",
            f"{s.rss_mib:.1f}",
            f"{s.rchar_mib:.0f}",
            f"{s.rchar_mib / mib:.3f}",
            f"{s.read_bytes_mib:.0f}",
        ])
    up = statistics.median(stages["upload"])
    ver = statistics.median(stages["verify"])
    other = statistics.median(stages["other"])
    blank = [""] * 8
    rows.append(["  of which: upload stage (run report)", f"{up:.2f}", f"{up / cu.wall:.2f}×",
                 f"{mib / up:.0f}", *blank])
    rows.append(["  of which: verify stage (run report)", f"{ver:.2f}", "", "", *blank])
    rows.append(["  of which: outside the stages", f"{other:.2f}", "", "", *blank])
    table = measure.markdown_table(
        ["client", "wall s, median (min–max)", "wall / curl", "MiB/s", "CPU s (user+sys)",
         "servers' CPU s", "CPU s, both", "peak RSS MiB (own)", "with children", "rchar MiB", "rchar / size", "disk MiB"],
        rows,
    )
    pl, cli = results["pipeline"], results["cli"]
    ratios = "\n".join([
        f"- whole `pipeline run` vs curl: wall {pl.wall / cu.wall:.2f}×, "
        f"CPU {pl.cpu / cu.cpu:.2f}×; its upload stage alone: wall {up / cu.wall:.2f}×",
        f"- pipeline vs openstack image create: wall {pl.wall / cli.wall:.2f}×, "
        f"CPU {pl.cpu / cli.cpu:.2f}×; curl vs openstack image create: wall "
        f"{cu.wall / cli.wall:.2f}×",
    ])
    return table, ratios


def targets(cases):
    """The summary against the targets, over every size measured."""
    lines = []
    walls, rss, reads = [], [], []
    for size, results, _ in cases:
        pl, cu = results["pipeline"], results["curl"]
        label = size_label(size)
        walls.append(f"{label} {pl.wall / cu.wall:.2f}×")
        rss.append((label, pl.own_rss_mib))
        reads.append(f"{label} {pl.rchar_mib / (size / measure.MIB):.3f}")
    ok_wall = all(
        r["pipeline"].wall <= TARGET_WALL_RATIO * r["curl"].wall for _, r, _ in cases
    )
    lines.append(
        f"- wall, pipeline / curl ≤ {TARGET_WALL_RATIO:.2f}×: {', '.join(walls)} — "
        f"{'met' if ok_wall else 'NOT met'}"
    )
    peaks = [m for _, m in rss]
    spread = max(peaks) - min(peaks)
    ok_rss = max(peaks) <= TARGET_RSS_MIB
    same = spread <= SAME_RSS_MIB
    rss_text = ", ".join(f"{label} {m:.1f} MiB" for label, m in rss)
    lines.append(
        f"- pipeline's own peak RSS ≤ {TARGET_RSS_MIB} MiB: {rss_text} — "
        f"{'met' if ok_rss else 'NOT met'}"
        + (
            f"; the same at every size (spread {spread:.1f} MiB, ≤ {SAME_RSS_MIB} MiB counts "
            f"as the same): {'yes' if same else 'NO'}"
            if len(peaks) > 1
            else ""
        )
    )
    lines.append(
        f"- pipeline's rchar / image size = 1 (the file read once; its `nix` children's "
        f"reads included): {', '.join(reads)}"
    )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--case", action="append", required=True, metavar="IMAGE:FLAKE",
                   help="an image file and the flake whose images.lucy is its store copy")
    p.add_argument("--pipeline-file", required=True)
    p.add_argument("--cloud", default="local")
    p.add_argument("--openstack", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    glance = Glance(args.openstack, args.cloud)
    clear(glance, ", left by an earlier run")
    tmp = tempfile.mkdtemp(prefix="bench-publish-")
    log_dir = os.path.dirname(os.path.abspath(args.out))
    load_before = measure.machine_line()
    cases = []
    try:
        for case in args.case:
            image, flake = case.split(":", 1)
            size = os.path.getsize(image)
            tag = size_label(size).replace(" ", "").lower()
            results, stages = measure_case(args, glance, image, flake, tmp, log_dir, tag)
            cases.append((size, results, stages))
    except measure.CommandFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        clear(glance)
        shutil.rmtree(tmp, ignore_errors=True)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = []
    for size, results, stages in cases:
        table, ratios = case_table(size, results, stages)
        sections.append(
            f"## {size_label(size)} ({size} bytes)\n\n{table}\n\n{ratios}\n"
        )
    sizes = ", ".join(size_label(s) for s, _, _ in cases)
    body = "\n".join(sections)
    doc = f"""# publish benchmark ({now})

Files: qcow2 images of {sizes} (random guest data, GPT + ESP), each published into the local
Glance (cloud `{args.cloud}`: Keystone + Glance on 127.0.0.1, file store) {args.rounds}× by
each client, rounds alternating, page cache warm. Each image is checked `active` with the
right size and then deleted.

Machine: {load_before} before, {measure.machine_line().split(", load average ")[1]} after.

## Targets

{targets(cases)}

{body}
What each client does: `pipeline run` = the whole run of a one-profile pipeline (nix
evaluation, a build that is already done, tag, verify = qcow2 header, tables and partition
table (what needs no full read), no boot (its boot-check stage is skipped with a reason), then
upload = create hidden candidate, one read of the store output that recomputes its NAR hash
and md5/sha256/sha512 while PUT /file streams it, wait active, compare Glance's hashes, record
the sdk's hashes, make current); all three clients read the same file, the store copy;
its stage times come from its `--report`, "outside the stages" is the rest of its wall time
(start-up, authentication, nix evaluation of the flake, the report); its log of each round is
in publish-SIZE-pipeline-N.log beside this file. `curl` = only the PUT of the bytes into an
image created beforehand (the POST is not timed; token from `openstack token issue`).
`openstack image create` = the whole CLI process (start-up, auth, create, upload).

Columns: wall = median elapsed time (min–max over the rounds); wall / curl = the median over
curl's median; MiB/s = file size / wall; CPU = user+sys of the client and its children (GNU
time); peak RSS = the client process alone (VmHWM sampled every 50 ms), "with children" = GNU
time's figure including child processes (the `nix` commands `pipeline` runs); rchar = bytes
returned by read calls (/proc/PID/io, page-cache hits and children included), over the file
size = how many times the file was read; disk = `read_bytes` (from the block device);
servers' CPU = user+sys the cloud's Keystone and Glance processes (every thread, masters and
workers, from /proc/PID/stat) used while the client ran; "both" = the client's and the
servers' together, what the machine's CPUs had to give during the run.
"""
    measure.write_report(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
