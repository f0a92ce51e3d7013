"""`make bench` part 1: `pipeline verify` against sha512sum and openssl on the same file.

Runs every tool once per round, rounds alternating (the starting tool rotates each round, so
no tool always runs right after the same neighbour), then prints a table and ratios and
writes them as Markdown. The page cache is expected to be warm (verify.sh reads the files
first): this measures hashing and I/O-path cost, not the disk.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

import measure


def tools(args) -> list:
    verify = [args.pipeline, "--root", args.root, "verify"]
    profile = ["--profile", args.profile, "--json"]
    out = [
        ("pipeline verify (md5+sha256+sha512)", [*verify, args.image, *profile]),
    ]
    if args.store_image:
        out.append(
            (
                "pipeline verify, store copy (+NAR sha256)",
                [*verify, args.store_image, *profile],
            )
        )
    out += [
        ("sha512sum", ["sha512sum", args.image]),
        ("openssl dgst -sha512", ["openssl", "dgst", "-sha512", args.image]),
        ("md5sum", ["md5sum", args.image]),
        ("sha256sum", ["sha256sum", args.image]),
        ("openssl dgst -md5", ["openssl", "dgst", "-md5", args.image]),
        ("openssl dgst -sha256", ["openssl", "dgst", "-sha256", args.image]),
    ]
    return out


def check_digests(results: dict) -> str:
    """The tools must agree, or the figures compare different work."""
    want = {}
    for name, summary in results.items():
        text = summary.samples[0].stdout
        if name.startswith("pipeline"):
            d = json.loads(text)["digests"]
            got = {k: d[k] for k in ("md5", "sha256", "sha512")}
        elif name.startswith("openssl"):
            got = {name.rsplit("-", 1)[-1]: text.rsplit("=", 1)[-1].strip()}
        else:
            got = {name.removesuffix("sum"): text.split()[0]}
        for algo, value in got.items():
            if want.setdefault(algo, (value, name))[0] != value:
                raise SystemExit(
                    f"bench: {algo} disagrees: {name} says {value}, "
                    f"{want[algo][1]} says {want[algo][0]}"
                )
    return ", ".join(sorted(want))


def version(argv) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return out.splitlines()[0].strip() if out else "?"
    except OSError:
        return "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--store-image")
    p.add_argument("--profile", default="lucy")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    size = os.path.getsize(args.image)
    load_before = measure.machine_line()
    todo = tools(args)
    results = {name: measure.Summary(name, []) for name, _ in todo}
    for r in range(args.rounds):
        order = todo[r % len(todo) :] + todo[: r % len(todo)]
        for name, argv in order:
            try:
                s = measure.run(argv)
            except measure.CommandFailed as e:
                print(f"bench: {e}", file=sys.stderr)
                return 1
            results[name].samples.append(s)
            measure.progress(
                f"  round {r + 1}/{args.rounds}  {name:<42} {s.wall:6.2f} s  "
                f"cpu {s.cpu:5.2f} s  rss {s.rss_kib / 1024:6.1f} MiB"
            )
    agreed = check_digests(results)

    mib = size / measure.MIB
    rows = []
    for name, s in results.items():
        rows.append(
            [
                name,
                f"{s.wall:.2f} ({s.wall_min:.2f}–{s.wall_max:.2f})",
                f"{mib / s.wall:.0f}",
                f"{s.cpu:.2f}",
                f"{s.own_rss_mib:.1f}",
                f"{s.rss_mib:.1f}",
                f"{s.rchar_mib:.0f}",
                f"{s.read_bytes_mib:.0f}",
            ]
        )
    sums = {}
    for label, seq in (
        ("md5sum + sha256sum + sha512sum", ["md5sum", "sha256sum", "sha512sum"]),
        (
            "openssl dgst -md5 + -sha256 + -sha512",
            [f"openssl dgst -{a}" for a in ("md5", "sha256", "sha512")],
        ),
    ):
        wall = sum(results[n].wall for n in seq)
        cpu = sum(results[n].cpu for n in seq)
        sums[label] = (wall, cpu)
        rows.append(
            [
                f"{label} (sum)",
                f"{wall:.2f}",
                f"{mib / wall:.0f}",
                f"{cpu:.2f}",
                "",
                "",
                f"{sum(results[n].rchar_mib for n in seq):.0f}",
                "",
            ]
        )
    table = measure.markdown_table(
        [
            "tool",
            "wall s, median (min–max)",
            "MiB/s",
            "user+sys s",
            "peak RSS MiB",
            "with children",
            "read() MiB",
            "disk MiB",
        ],
        rows,
    )

    pv = results["pipeline verify (md5+sha256+sha512)"]
    ratios = []
    for other in ("sha512sum", "openssl dgst -sha512"):
        o = results[other]
        ratios.append(
            f"- pipeline verify vs {other}: wall {pv.wall / o.wall:.2f}×, "
            f"CPU {pv.cpu / o.cpu:.2f}×"
        )
    for label, (wall, cpu) in sums.items():
        ratios.append(
            f"- pipeline verify vs {label} run one after another (same three digests): "
            f"wall {pv.wall / wall:.2f}×, CPU {pv.cpu / cpu:.2f}×"
        )
    store_name = "pipeline verify, store copy (+NAR sha256)"
    if store_name in results:
        st = results[store_name]
        ratios.append(
            f"- pipeline verify of the store copy (NAR sha256 in the same read, plus one "
            f"`nix path-info`) vs sha512sum: wall {st.wall / results['sha512sum'].wall:.2f}×, "
            f"CPU {st.cpu / results['sha512sum'].cpu:.2f}×; vs plain pipeline verify: "
            f"wall {st.wall / pv.wall:.2f}×"
        )

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""# verify benchmark ({now})

File: a {mib:.0f} MiB qcow2 ({size} bytes) of random (incompressible) guest data with a GPT +
EFI System Partition, verified as profile `{args.profile}`. {args.rounds} rounds, tools
alternating, the page cache warmed first (each file read once before the rounds), so these
figures are CPU and I/O-path cost, not disk speed. All tools agree on the digests ({agreed}).

Machine: {load_before} before, {measure.machine_line().split(", load average ")[1]} after.
Tools: {version(["sha512sum", "--version"])}; {version(["openssl", "version"])}.

{table}

{chr(10).join(ratios)}

Columns: wall = median elapsed time; MiB/s = file size / median wall; user+sys = CPU time of
the process and its children (GNU time, median); peak RSS = largest over the rounds of the
process alone (VmHWM sampled every 50 ms), "with children" = GNU time's figure, which for the
store copy includes the `nix path-info` child; read() MiB = `rchar` from /proc/PID/io
(bytes returned by read calls, page-cache hits included: ~{mib:.0f} MiB means the file was read
once); disk MiB = `read_bytes` (fetched from the block device; 0 = all from cache).
`pipeline verify` hashes md5, sha256 and sha512 on three threads fed by one read (and the NAR
sha256 on the same bytes for a store path); the other tools each compute one digest. On a
2-core machine shared with other jobs, wall time of a 3-thread tool suffers more from load
than a 1-thread tool's: compare the CPU column too.
"""
    measure.write_report(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
