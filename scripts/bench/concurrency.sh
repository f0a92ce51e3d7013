#!/usr/bin/env bash
# `make bench-concurrency`: five profiles published at once against one at a time. A generated
# flake declares lucy, makise, quinn, sunraku and generic, each a distinct store copy (its own
# derivation name) of a cached 1 GiB qcow2 of image.sh (sunraku, a bios profile, gets the
# --bios variant: GPT + BIOS boot partition). The release `pipeline run` of a five-profile
# pipeline at `concurrency:` 1, 2 and 5 is compared with the slowest single-profile publish,
# alternating rounds, once per Glance worker count of BENCH_WORKERS (default "1 2", set with
# CLOUD_GLANCE_WORKERS, the cloud restarted between series). Writes .run/bench/concurrency.md.
# Every image it creates is deleted.
#
# The local cloud of CLOUD_DIR (default .run/cloud) is started here if it is not running
# (`make cloud-up`, with the harness's CLOUD_*_PORT settings), and stopped again at the end in
# that case (BENCH_KEEP_CLOUD=1 leaves it up, with the last series' workers). A cloud that was
# already running is never restarted: only the series of its own worker count is measured.
# BENCH_ROUNDS (default 3), BENCH_CONCURRENCY (default "1 2 5"); BENCH_MIB=N uses N MiB
# images (smoke tests).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a workers <<<"${BENCH_WORKERS:-1 2}"
read -r -a levels <<<"${BENCH_CONCURRENCY:-1 2 5}"
for n in "${workers[@]}" "${levels[@]}"; do
  if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
    echo "bench: BENCH_WORKERS and BENCH_CONCURRENCY take positive integers, got '$n'" >&2
    exit 1
  fi
done

bash "$here/install.sh"
bench_pipeline
size=$(bench_size_args 1)
uefi=$("$here/image.sh" "$size")
bios=$("$here/image.sh" --bios "$size")
label=$(basename "$uefi" .qcow2)
label=${label#verify-}
# shellcheck source=scripts/nix-env.sh
. scripts/nix-env.sh

specs=()
profile_args=()
for p in lucy makise quinn sunraku generic; do
  if [ "$p" = sunraku ]; then img=$bios boot=legacy-bios; else img=$uefi boot=uefi; fi
  specs+=("$p:$boot:hephaestus-bench-concurrency-$p-$label:$img")
  profile_args+=(--profile "$p=$img")
done
flake=$cache/flake-concurrency-$label
mapfile -t built < <(bench_flake "$flake" "${specs[@]}")
if [ "${#built[@]}" -ne 5 ]; then
  echo "bench: building the five store copies failed" >&2
  exit 1
fi
files=()
for line in "${built[@]}"; do files+=("${line#* }/nixos.qcow2"); done

pipeline_files=()
for c in "${levels[@]}"; do
  bench_pipeline_yaml "$out_dir/concurrency-$c.yaml" "[lucy, makise, quinn, sunraku, generic]" "$c"
  pipeline_files+=("$out_dir/concurrency-$c.yaml")
done

bench_clouds_up local
# measure.py counts the CPU these servers use during each measured run.
export BENCH_CLOUD_DIR=$cloud_dir BENCH_SERVER_CLOUDS=local
notes=()
if [ -n "$bench_started" ]; then
  todo=("${workers[@]}")
else
  now=$(bench_glance_workers local)
  todo=("$now")
  notes+=(--note "The cloud was running before the benchmark (not started by it), so it was not restarted: only the series of its own Glance worker count ($now) was measured; asked for: ${workers[*]}.")
fi

series=()
for w in "${todo[@]}"; do
  if [ -n "$bench_started" ] && [ "$(bench_glance_workers local)" != "$w" ]; then
    echo "bench: restarting the cloud with CLOUD_GLANCE_WORKERS=$w" >&2
    # shellcheck disable=SC2031  # (lib.sh's subshells only read it)
    export CLOUD_GLANCE_WORKERS=$w
    bench_clouds_restart
  fi
  echo "bench: warming the page cache (reading the five store copies)" >&2
  cat "${files[@]}" >/dev/null
  python3 -B "$here/concurrency.py" measure --pipeline "$pipeline" --root "$root" \
    --flake "$flake" "${profile_args[@]}" --concurrency "${levels[*]}" \
    --pipeline-files "${pipeline_files[@]}" --cloud local --workers "$w" \
    --openstack "$CLOUD_VENV/bin/openstack" --rounds "$rounds" \
    --out "$out_dir/concurrency-w$w.json"
  series+=("$out_dir/concurrency-w$w.json")
done

python3 -B "$here/concurrency.py" report --series "${series[@]}" --cloud local \
  "${notes[@]}" --out "$out_dir/concurrency.md"
