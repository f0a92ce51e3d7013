"""`make bench-two-clouds`: one build published into two clouds from one read of the file.

Cases, alternating rounds (the first case rotates from round to round):
  (a) `pipeline run FILE --cloud local`: one cloud, the baseline;
  (b) `pipeline run FILE --cloud local --cloud local-prod`: both clouds in one run;
  (c) two sequential runs, `--cloud local` then `--cloud local-prod`: the way without (b).

Every run's `--report` is checked: (b)'s image entry must list both clouds under `clouds`,
each `published` with the whole file sent and no error (a pipeline that does not write that
list yet fails the benchmark, saying so). Each image is checked `active` with the right size
in its cloud, then every `hephaestus-bench-*` image of both clouds is deleted, so the next run
publishes again.
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
from benchcloud import Glance, ReportError, check_active, clear, published

TARGET_B = 1.2  # (b) / (a), wall medians

NAMES = {
    "a": "(a) run --cloud local",
    "b": "(b) run --cloud local --cloud local-prod",
    "c": "(c) run --cloud local; run --cloud local-prod",
}


def combined(samples: list) -> measure.Sample:
    """Two sequential commands as one: times and bytes add up, peaks are the larger."""
    return measure.Sample(
        wall=sum(s.wall for s in samples),
        user=sum(s.user for s in samples),
        sys=sum(s.sys for s in samples),
        rss_kib=max(s.rss_kib for s in samples),
        own_rss_kib=max(s.own_rss_kib for s in samples),
        rchar=sum(s.rchar for s in samples),
        read_bytes=sum(s.read_bytes for s in samples),
        write_bytes=sum(s.write_bytes for s in samples),
        stdout="".join(s.stdout for s in samples),
        stderr="".join(s.stderr for s in samples),
        server_cpu=sum(s.server_cpu for s in samples),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--pipeline-file", required=True)
    p.add_argument("--flake", required=True)
    p.add_argument("--clouds", default="local local-prod")
    p.add_argument("--cases", default="a b c")
    p.add_argument("--openstack", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    first, second = args.clouds.split()
    cases = args.cases.split()
    if not cases or any(c not in NAMES for c in cases):
        raise SystemExit(f"bench: BENCH_CASES must name some of a, b, c; got {args.cases!r}")
    size = os.path.getsize(args.image)
    glances = {c: Glance(args.openstack, c) for c in (first, second)}
    for g in glances.values():
        clear(g, ", left by an earlier run")
    tmp = tempfile.mkdtemp(prefix="bench-two-clouds-")
    report_path = os.path.join(tmp, "report.json")
    log_dir = os.path.dirname(os.path.abspath(args.out))

    def run(clouds: list, log: str) -> measure.Sample:
        argv = [args.pipeline, "--root", args.root, "run", args.pipeline_file,
                "--flake", args.flake, "--report", report_path]
        for c in clouds:
            argv += ["--cloud", c]
        if os.path.exists(report_path):
            os.unlink(report_path)
        try:
            s = measure.run(argv)
        except measure.CommandFailed as e:
            text = str(e)
            if len(clouds) > 1 and ("cannot be used multiple times" in text
                                    or "unexpected argument" in text):
                raise SystemExit(
                    "bench: this pipeline binary does not take --cloud more than once, so "
                    "case (b) cannot run; BENCH_CASES='a c' measures the rest.\n" + text
                ) from None
            raise
        with open(os.path.join(log_dir, log), "w") as f:
            f.write(s.stderr)
        with open(report_path) as f:
            report = json.load(f)
        try:
            ids = published(report["images"][0], clouds, size)
        except ReportError as e:
            hint = (" (case (b) needs it; BENCH_CASES='a c' measures the rest)"
                    if len(clouds) > 1 else "")
            raise SystemExit(f"bench: {' + '.join(clouds)}: {e}{hint}") from None
        for c, image_id in ids.items():
            check_active(glances[c], image_id, size, f"pipeline into {c}")
        for g in glances.values():
            clear(g)
        return s

    def case_a(r):
        return run([first], f"two-clouds-a-{r + 1}.log")

    def case_b(r):
        return run([first, second], f"two-clouds-b-{r + 1}.log")

    def case_c(r):
        return combined([run([first], f"two-clouds-c1-{r + 1}.log"),
                         run([second], f"two-clouds-c2-{r + 1}.log")])

    todo = [(k, fn) for k, fn in (("a", case_a), ("b", case_b), ("c", case_c)) if k in cases]
    results = {k: measure.Summary(NAMES[k], []) for k, _ in todo}
    load_before = measure.machine_line()
    try:
        for r in range(args.rounds):
            order = todo[r % len(todo):] + todo[: r % len(todo)]
            for key, fn in order:
                s = fn(r)
                results[key].samples.append(s)
                measure.progress(
                    f"  round {r + 1}/{args.rounds}  {NAMES[key]:<46} {s.wall:6.2f} s  "
                    f"cpu {s.cpu:5.2f} s  servers {s.server_cpu:5.2f} s  "
                    f"rss {s.own_rss_kib / 1024:6.1f} MiB  "
                    f"read {s.rchar / measure.MIB:6.0f} MiB"
                )
    except measure.CommandFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        for g in glances.values():
            clear(g)
        shutil.rmtree(tmp, ignore_errors=True)

    mib = size / measure.MIB
    base = results.get("a")
    rows = []
    for key, s in results.items():
        rows.append([
            s.name,
            f"{s.wall:.2f} ({s.wall_min:.2f}–{s.wall_max:.2f})",
            f"{s.wall / base.wall:.2f}×" if base else "",
            f"{s.cpu:.2f}",
            f"{s.server_cpu:.2f}",
            f"{s.cpu + s.server_cpu:.2f}",
            f"{s.own_rss_mib:.1f}",
            f"{s.rchar_mib:.0f}",
            f"{s.rchar_mib / mib:.3f}",
        ])
    table = measure.markdown_table(
        ["case", "wall s, median (min–max)", "wall / (a)", "CPU s (user+sys)",
         "servers' CPU s", "CPU s, both", "peak RSS MiB (own)", "rchar MiB", "rchar / size"],
        rows,
    )

    def ratio(key):
        if base and key in results:
            return results[key].wall / base.wall
        return None

    rb, rc = ratio("b"), ratio("c")
    lines = []
    if rb is not None:
        lines.append(f"- (b) / (a) = {rb:.2f}× (target ≤ {TARGET_B:.1f}×: "
                     f"{'met' if rb <= TARGET_B else 'NOT met'})")
    else:
        lines.append("- (b) / (a): not measured (case "
                     f"{'b' if 'b' not in results else 'a'} not run)")
    if rc is not None:
        lines.append(f"- (c) / (a) = {rc:.2f}× (two runs, one per cloud)")
    if rb is not None and rc is not None:
        lines.append(f"- (b) / (c) = {results['b'].wall / results['c'].wall:.2f}×: what one "
                     f"run into both clouds costs against two runs")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""# two clouds from one read ({now})

File: a {mib:.0f} MiB qcow2 ({size} bytes, random guest data, GPT + ESP) as the store copy of
a generated flake's images.lucy, published by `pipeline run` of a one-profile pipeline
(evaluate, build (already done), tag, verify, boot-check skipped with a reason, upload) into
the local clouds `{first}` and `{second}` (Keystone + Glance on 127.0.0.1, file store),
{args.rounds} round(s), cases alternating, page cache warm.

Machine: {load_before} before, {measure.machine_line().split(", load average ")[1]} after.

{table}

{chr(10).join(lines)}

Columns: wall = median elapsed time (min–max over the rounds), for (c) the two runs added up;
CPU = user+sys of `pipeline` and its children (GNU time); peak RSS = the `pipeline` process
alone (VmHWM sampled every 50 ms; for (c) the larger of the two runs); rchar = bytes returned
by read calls (/proc/PID/io, children included), over the file size = how many times the file
was read; servers' CPU = user+sys the clouds' Keystone and Glance processes (every thread,
masters and workers, /proc/PID/stat) used meanwhile; "both" = client and servers together,
what the machine's CPUs had to give. Each run's report was checked: every cloud `published` with the whole file sent.
Logs of each run are in two-clouds-CASE-N.log beside this file.
"""
    measure.write_report(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
