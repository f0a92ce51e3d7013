"""`make bench-promote`: copy one image from a staging Glance into a production Glance with
`pipeline promote`, and with `openstack image save` then `openstack image create --file`,
alternating rounds, and compare wall time, peak RSS and bytes written to local disk.

The source image is created once with the provenance `pipeline promote` requires and deleted
at the end; every copy in the target is deleted right after it has been measured (and, at
start and end, any image left by an interrupted earlier run: names starting with
`hephaestus-bench-`).
"""

import argparse
import datetime
import os
import shutil
import sys

import measure
from benchcloud import PREFIX, Glance, check_active

STABLE = PREFIX + "promote-lucy"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--source", default="local")
    p.add_argument("--target", default="local-prod")
    p.add_argument("--openstack", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scratch", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    size = os.path.getsize(args.image)
    source = Glance(args.openstack, args.source)
    target = Glance(args.openstack, args.target)
    for g in (source, target):
        for image_id in g.leftovers():
            measure.progress(f"  deleting {image_id}, left by an earlier run")
            g.delete(image_id)

    measure.progress(f"  creating the source image in {args.source} ({size} bytes)")
    made = measure.run([
        args.openstack, "--os-cloud", args.source, "image", "create", "--file", args.image,
        "--disk-format", "qcow2", "--container-format", "bare", "--private",
        "--tag", "hephaestus", "--tag", "profile:lucy", "--tag", "current",
        "--property", "hephaestus_profile=lucy",
        "--property", "hephaestus_store_path=/nix/store/00000000000000000000000000000000-bench",
        "--property", "hephaestus_generation=209912310000-bench000",
        "-f", "value", "-c", "id", STABLE,
    ])
    source_id = made.stdout.strip()
    check_active(source, source_id, size, "source image")
    os.makedirs(args.scratch, exist_ok=True)
    scratch_file = os.path.join(args.scratch, "image.qcow2")

    def clear_target():
        for image_id in target.leftovers():
            target.delete(image_id)

    def pipeline_promote(r):
        argv = [args.pipeline, "--root", args.root, "promote", "--from", args.source,
                "--to", args.target, "--profile", "lucy", "--name",
                PREFIX + "promote-{profile}", "--lock-timeout", "0"]
        env = dict(os.environ, HEPHAESTUS_RUN_DIR=args.scratch)
        s = measure.run(argv, env=env)
        copies = target.leftovers()
        if len(copies) != 1:
            raise SystemExit(f"bench: pipeline promote left {copies} in {args.target}")
        check_active(target, copies[0], size, "pipeline promote")
        clear_target()
        return s

    def save_then_create(r):
        save = measure.run([args.openstack, "--os-cloud", args.source, "image", "save",
                            "--file", scratch_file, source_id])
        create = measure.run([
            args.openstack, "--os-cloud", args.target, "image", "create", "--file",
            scratch_file, "--disk-format", "qcow2", "--container-format", "bare",
            "--private", "-f", "value", "-c", "id", f"{PREFIX}cli-{r}",
        ])
        os.remove(scratch_file)
        check_active(target, create.stdout.strip(), size, "openstack image create")
        clear_target()
        # One copy, two processes one after the other: times and bytes add up, the peak
        # memory is the larger of the two.
        return measure.Sample(
            wall=save.wall + create.wall,
            user=save.user + create.user,
            sys=save.sys + create.sys,
            rss_kib=max(save.rss_kib, create.rss_kib),
            own_rss_kib=max(save.own_rss_kib, create.own_rss_kib),
            rchar=save.rchar + create.rchar,
            read_bytes=save.read_bytes + create.read_bytes,
            write_bytes=save.write_bytes + create.write_bytes,
            stdout="",
            stderr="",
        )

    names = {
        "pipeline": "pipeline promote (stream, no file)",
        "cli": "openstack image save + image create",
    }
    todo = [("pipeline", pipeline_promote), ("cli", save_then_create)]
    results = {k: measure.Summary(names[k], []) for k, _ in todo}
    load_before = measure.machine_line()
    try:
        for r in range(args.rounds):
            order = todo[r % len(todo):] + todo[: r % len(todo)]
            for key, fn in order:
                s = fn(r)
                results[key].samples.append(s)
                measure.progress(
                    f"  round {r + 1}/{args.rounds}  {names[key]:<36} {s.wall:6.2f} s  "
                    f"rss {s.own_rss_kib / 1024:6.1f} MiB  "
                    f"written {s.write_bytes / measure.MIB:6.0f} MiB"
                )
    except measure.CommandFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        clear_target()
        for image_id in source.leftovers():
            source.delete(image_id)
        shutil.rmtree(args.scratch, ignore_errors=True)

    mib = size / measure.MIB
    rows = [[
        s.name,
        f"{s.wall:.2f} ({s.wall_min:.2f}–{s.wall_max:.2f})",
        f"{mib / s.wall:.0f}",
        f"{s.cpu:.2f}",
        f"{s.own_rss_mib:.1f}",
        f"{s.rss_mib:.1f}",
        f"{s.write_bytes_mib:.0f}",
    ] for s in results.values()]
    table = measure.markdown_table(
        ["client", "wall s, median (min–max)", "MiB/s", "user+sys s", "peak RSS MiB",
         "with children", "written to disk MiB"],
        rows,
    )
    pl, cli = results["pipeline"], results["cli"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = f"""# promote benchmark ({now})

Image: the {mib:.0f} MiB qcow2 ({size} bytes) copied from cloud `{args.source}` into cloud
`{args.target}` (two Keystone + Glance pairs on 127.0.0.1, file store) {args.rounds} times by
each client, rounds alternating. Each copy is checked `active` with the right size, then
deleted.

Machine: {load_before} before, {measure.machine_line().split(", load average ")[1]} after.

{table}

- pipeline promote vs save + create: wall {pl.wall / cli.wall:.2f}×, peak RSS
  {pl.own_rss_mib:.1f} vs {cli.own_rss_mib:.1f} MiB, written to local disk
  {pl.write_bytes_mib:.0f} vs {cli.write_bytes_mib:.0f} MiB

`pipeline promote` = the whole command (start-up, authentication to both clouds, lookup,
hidden candidate, `GET /file` streamed into `PUT /file`, wait `active`, compare hashes, make
current, retention). `openstack image save` + `openstack image create --file` = the two CLI
processes one after the other, through a temporary file in the scratch directory (their
times and bytes added, the larger peak RSS). Written to disk = `write_bytes` of
/proc/PID/io, children included. Glance's own disk writes (its file store) are in neither.
"""
    with open(args.out, "w") as f:
        f.write(doc)
    print(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
