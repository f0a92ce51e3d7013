"""`make bench-rerun`: what a publish-all run costs when nothing changed since the last one.

The first run publishes every fixture image (and boots each one: its boot-check stage runs,
with an empty boot-proof cache); then `--rounds` runs follow with nothing changed. Each of
those must report every image `skipped` with 0 bytes sent, and start no QEMU: QEMU is reached
through a wrapper (first on PATH) that logs every invocation, and an invocation that only asks
`--version` is counted apart (the boot-proof cache keys its proofs by QEMU's version).

Every image is deleted at the end (and, at the start, any left by an interrupted earlier run:
names starting with `hephaestus-bench-`).
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
from benchcloud import Glance, clear

VERSION_ARGS = ("--version", "-version")


def qemu_calls(log: str) -> list:
    try:
        with open(log) as f:
            return [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        return []


def is_start(call: str) -> bool:
    """Every invocation but one whose only argument asks for the version."""
    return call.split() not in [[a] for a in VERSION_ARGS]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--pipeline-file", required=True)
    p.add_argument("--flake", required=True)
    p.add_argument("--cloud", default="local")
    p.add_argument("--openstack", required=True)
    p.add_argument("--qemu-log", required=True, help="the file the QEMU wrapper appends to")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    glance = Glance(args.openstack, args.cloud)
    clear(glance, ", left by an earlier run")
    tmp = tempfile.mkdtemp(prefix="bench-rerun-")
    report_path = os.path.join(tmp, "report.json")
    log_dir = os.path.dirname(os.path.abspath(args.out))
    runs = []  # (label, sample, report, qemu calls)
    failures = []

    def run(label, log):
        argv = [args.pipeline, "--root", args.root, "run", args.pipeline_file, "--cloud",
                args.cloud, "--flake", args.flake, "--report", report_path]
        if os.path.exists(report_path):
            os.unlink(report_path)
        before = len(qemu_calls(args.qemu_log))
        s = measure.run(argv)
        calls = qemu_calls(args.qemu_log)[before:]
        with open(os.path.join(log_dir, log), "w") as f:
            f.write(s.stderr)
        with open(report_path) as f:
            report = json.load(f)
        runs.append((label, s, report, calls))
        starts = [c for c in calls if is_start(c)]
        measure.progress(
            f"  {label:<10} {s.wall:7.2f} s  cpu {s.cpu:6.2f} s  rss "
            f"{s.own_rss_kib / 1024:6.1f} MiB  "
            + " ".join(f"{i['profile']}={i['status']}" for i in report["images"])
            + f"  QEMU started {len(starts)}"
        )
        return report, starts

    try:
        first, starts = run("first run", "rerun-first.log")
        for img in first["images"]:
            if img["status"] != "published" or img["bytes_sent"] != img.get("size"):
                raise SystemExit(
                    f"bench: the first run did not publish {img['profile']}: status "
                    f"{img['status']}, {img['bytes_sent']} bytes sent, error {img['error']!r}"
                )
        if not starts:
            failures.append("the first run started no QEMU: the boot check did not boot "
                            "(or the wrapper is not on its PATH), so the count proves nothing")
        for r in range(args.rounds):
            report, starts = run(f"rerun {r + 1}", f"rerun-{r + 1}.log")
            for img in report["images"]:
                if img["status"] != "skipped" or img["bytes_sent"] != 0:
                    failures.append(
                        f"rerun {r + 1}: {img['profile']} is {img['status']} with "
                        f"{img['bytes_sent']} bytes sent (expected skipped, 0)"
                    )
            if starts:
                failures.append(f"rerun {r + 1}: QEMU started {len(starts)} time(s): "
                                + "; ".join(c[:120] for c in starts[:3]))
    except measure.CommandFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        clear(glance)
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for label, s, report, calls in runs:
        starts = [c for c in calls if is_start(c)]
        statuses = {}
        for img in report["images"]:
            statuses[img["status"]] = statuses.get(img["status"], 0) + 1
        boots = {}
        for img in report["images"]:
            for st in img["stages"]:
                if st["stage"] == "boot-check":
                    boots[st["status"]] = boots.get(st["status"], 0) + 1
        rows.append([
            label,
            f"{s.wall:.2f}",
            f"{s.cpu:.2f}",
            f"{s.own_rss_kib / 1024:.1f}",
            f"{s.rchar / measure.MIB:.0f}",
            ", ".join(f"{n} {k}" for k, n in sorted(statuses.items())),
            str(sum(i["bytes_sent"] for i in report["images"])),
            ", ".join(f"{n} {k}" for k, n in sorted(boots.items())),
            str(len(starts)),
            str(len([c for c in starts if "/kvm-probe/" in c])),
            str(len(calls) - len(starts)),
        ])
    table = measure.markdown_table(
        ["run", "wall s", "CPU s (user+sys)", "peak RSS MiB (own)", "rchar MiB",
         "images", "bytes sent", "boot-check stage", "QEMU started", "of which KVM probes",
         "QEMU --version"],
        rows,
    )
    reruns = runs[1:]
    rerun_starts = sum(len([c for c in calls if is_start(c)]) for _, _, _, calls in reruns)
    walls = [s.wall for _, s, _, _ in reruns]
    sizes = sum(i.get("size") or 0 for i in runs[0][2]["images"])
    wall_line = (
        f"{statistics.median(walls):.2f} s median ({min(walls):.2f}–{max(walls):.2f}) over "
        f"{len(walls)} rerun(s)" if walls else "no rerun measured"
    )
    verdict = ("every image skipped with 0 bytes sent in every rerun"
               if not failures else "NOT as expected:\n" + "\n".join(f"  - {f}" for f in failures))
    stage_notes = ""
    if reruns:
        img = reruns[-1][2]["images"][0]
        stage_notes = "\n- What the last rerun's stages said ({}): {}".format(
            img["profile"],
            "; ".join(f"{st['stage']} {st['status']}"
                      + (f" ({st['note']})" if st.get("note") else "") for st in img["stages"]),
        )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""# re-run with nothing changed ({now})

`pipeline run` of a copy of `pipelines/publish-all.yaml` (its stages, boot-check included;
images named `hephaestus-bench-rerun-{{profile}}`) against the fixture flake (`fixtures/flake`,
{len(runs[0][2]['images'])} profiles, {sizes / measure.MIB:.1f} MiB of images), into the local
cloud `{args.cloud}`: a first run that publishes and boots every image (empty boot-proof
cache), then {len(reruns)} run(s) with nothing changed.

Machine: {measure.machine_line()}.

{table}

- Rerun wall time: {wall_line}.
- Rerun outcome: {verdict}
- QEMU started: {rerun_starts} (all reruns together; an invocation with only `--version`
  is not a start: the boot-proof cache compares QEMU's version){stage_notes}

Columns: CPU = user+sys of `pipeline` and its children (GNU time); peak RSS = the `pipeline`
process alone (VmHWM sampled every 50 ms); rchar = bytes returned by read calls (children
included); QEMU started = invocations of `qemu-system-x86_64` through the logging wrapper on
PATH during that run, the guests booted plus the accelerator's probe guests (`accel: auto`
boots a tiny probe under KVM once per firmware before choosing KVM or TCG); --version =
invocations that only asked for the version. Logs: rerun-first.log, rerun-N.log beside this
file; the wrapper's log: rerun-qemu.log.
"""
    measure.write_report(doc, args.out)
    print(f"QEMU started: {rerun_starts}")
    if failures:
        print("bench: the rerun was not a no-op:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
