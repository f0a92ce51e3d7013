"""`make bench-concurrency`: publishing five profiles at once against one at a time.

`measure` runs one series (one Glance worker count): alternating rounds of a single-profile
publish of each profile and of the five-profile pipeline at each concurrency given, and
writes the samples as JSON. `report` turns the series' JSON files into one Markdown table.

Every run's `--report` is checked (each image `published`, the whole file sent) and each
image `active` with the right size; then every `hephaestus-bench-*` image is deleted, so the
next run publishes again.
"""

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile

import measure
from benchcloud import Glance, ReportError, check_active, clear, published


def measure_series(args) -> int:
    profiles = {}
    for spec in args.profile:
        name, path = spec.split("=", 1)
        profiles[name] = os.path.getsize(path)
    levels = [int(c) for c in args.concurrency.split()]
    glance = Glance(args.openstack, args.cloud)
    clear(glance, ", left by an earlier run")
    tmp = tempfile.mkdtemp(prefix="bench-concurrency-")
    report_path = os.path.join(tmp, "report.json")
    log_dir = os.path.dirname(os.path.abspath(args.out))

    def run(pipeline_file, only, log):
        argv = [args.pipeline, "--root", args.root, "run", pipeline_file, "--cloud",
                args.cloud, "--flake", args.flake, "--report", report_path]
        for p in only:
            argv += ["--profile", p]
        if os.path.exists(report_path):
            os.unlink(report_path)
        s = measure.run(argv)
        with open(os.path.join(log_dir, log), "w") as f:
            f.write(s.stderr)
        with open(report_path) as f:
            report = json.load(f)
        seen = {img["profile"]: img for img in report["images"]}
        if sorted(seen) != sorted(only or profiles):
            raise SystemExit(f"bench: the run reported {sorted(seen)}, expected "
                             f"{sorted(only or profiles)}")
        for name, img in seen.items():
            try:
                ids = published(img, [args.cloud], profiles[name])
            except ReportError as e:
                raise SystemExit(f"bench: {e}") from None
            check_active(glance, ids[args.cloud], profiles[name], f"pipeline ({name})")
        clear(glance)
        return s

    cases = [(f"single {p}", (lambda p: lambda r: run(
        args.pipeline_files[0], [p], f"concurrency-w{args.workers}-single-{p}-{r + 1}.log"))(p))
        for p in profiles]
    for c in levels:
        cases.append((f"concurrency {c}", (lambda c: lambda r: run(
            args.pipeline_files[levels.index(c)], [],
            f"concurrency-w{args.workers}-c{c}-{r + 1}.log"))(c)))
    samples = {k: [] for k, _ in cases}
    try:
        for r in range(args.rounds):
            order = cases[r % len(cases):] + cases[: r % len(cases)]
            for key, fn in order:
                s = fn(r)
                samples[key].append(s)
                measure.progress(
                    f"  workers {args.workers} round {r + 1}/{args.rounds}  {key:<16} "
                    f"{s.wall:7.2f} s  cpu {s.cpu:6.2f} s  servers {s.server_cpu:6.2f} s  rss {s.own_rss_kib / 1024:6.1f} MiB  "
                    f"read {s.rchar / measure.MIB:6.0f} MiB"
                )
    except measure.CommandFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        clear(glance)
        shutil.rmtree(tmp, ignore_errors=True)

    out = {
        "workers": args.workers,
        "rounds": args.rounds,
        "profiles": profiles,
        "levels": levels,
        "machine": measure.machine_line(),
        "samples": {
            k: [dict(dataclasses.asdict(s), stdout="", stderr="") for s in v]
            for k, v in samples.items()
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


def report(args) -> int:
    series = []
    for path in args.series:
        with open(path) as f:
            series.append(json.load(f))
    if not series:
        raise SystemExit("bench: no series measured")
    rows = []
    summary = []
    for sr in series:
        w = sr["workers"]
        total = sum(sr["profiles"].values())
        summ = {
            k: measure.Summary(k, [measure.Sample(**s) for s in v])
            for k, v in sr["samples"].items()
        }
        singles = {k: s for k, s in summ.items() if k.startswith("single ")}
        slowest_key = max(singles, key=lambda k: singles[k].wall)
        slowest = singles[slowest_key].wall
        for k, s in summ.items():
            size = (sr["profiles"][k.split(" ", 1)[1]] if k in singles else total)
            rows.append([
                k.split(" ", 1)[1] if k.startswith("concurrency ") else f"1 ({k})",
                str(w),
                f"{s.wall:.2f} ({s.wall_min:.2f}–{s.wall_max:.2f})",
                f"{s.wall / slowest:.2f}×",
                f"{s.cpu:.2f}",
                f"{s.server_cpu:.2f}",
                f"{s.own_rss_mib:.1f}",
                f"{s.rchar_mib / (size / measure.MIB):.3f}",
            ])
        levels = [f"concurrency {c}" for c in sr["levels"]]
        summary.append(
            f"- workers {w}: slowest single publish {slowest_key.split(' ', 1)[1]} "
            f"{slowest:.2f} s; "
            + ", ".join(f"concurrency {k.split(' ')[1]} {summ[k].wall / slowest:.2f}×"
                        for k in levels if k in summ)
            + f" (machine after: {sr['machine']})"
        )
    table = measure.markdown_table(
        ["concurrency", "Glance workers", "wall s, median (min–max)",
         "wall / slowest single", "CPU s (user+sys)", "servers' CPU s", "peak RSS MiB (own)",
         "rchar / bytes published"],
        rows,
    )
    first = series[0]
    mib = {p: s / measure.MIB for p, s in first["profiles"].items()}
    sizes = ", ".join(f"{p} {m:.0f} MiB" for p, m in mib.items())
    notes = "".join(f"- {n}\n" for n in args.note)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""# concurrency across profiles ({now})

Five profiles, each a distinct store copy (its own derivation) of a cached qcow2 of random
guest data ({sizes}; sunraku's is the BIOS variant: GPT + BIOS boot partition, the
others GPT + ESP), published by `pipeline run` of a five-profile pipeline (evaluate, build (already
done), tag, verify, boot-check skipped with a reason, upload) into the local cloud `{args.cloud}`
(Keystone + Glance on 127.0.0.1, file store) at each `concurrency:`, against a single-profile
publish of each profile (`--profile P`). {first['rounds']} round(s) per series, cases
alternating, page cache warm; one series per Glance worker count (`CLOUD_GLANCE_WORKERS`, the
cloud restarted between series).

{table}

{chr(10).join(summary)}

Notes:
{notes}- wall / slowest single = the run's median wall time over the median of the slowest
  single-profile publish of the same series: 1.00× would be five publishes in the time of
  the slowest one; 5× is no overlap at all.
- CPU = user+sys of `pipeline` and its children (GNU time); peak RSS = the `pipeline`
  process alone (VmHWM sampled every 50 ms); rchar / bytes published = bytes returned by read
  calls (children included) over the bytes of the images the run published; servers' CPU =
  user+sys of the cloud's Keystone and Glance processes (every thread, masters and workers)
  meanwhile. Logs of each run: concurrency-wW-CASE-N.log beside this file.
"""
    measure.write_report(doc, args.out)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--pipeline", required=True)
    m.add_argument("--root", required=True)
    m.add_argument("--flake", required=True)
    m.add_argument("--profile", action="append", required=True, metavar="NAME=IMAGE")
    m.add_argument("--concurrency", default="1 2 5")
    m.add_argument("--pipeline-files", nargs="+", required=True,
                   help="one pipeline per concurrency level, in the same order")
    m.add_argument("--cloud", default="local")
    m.add_argument("--workers", type=int, required=True)
    m.add_argument("--openstack", required=True)
    m.add_argument("--rounds", type=int, default=3)
    m.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--series", nargs="*", default=[])
    r.add_argument("--cloud", default="local")
    r.add_argument("--note", action="append", default=[])
    r.add_argument("--out", required=True)
    args = p.parse_args()
    return measure_series(args) if args.cmd == "measure" else report(args)


if __name__ == "__main__":
    sys.exit(main())
