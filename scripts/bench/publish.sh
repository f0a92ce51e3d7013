#!/usr/bin/env bash
# `make bench-publish`: publish cached qcow2 images (random bytes, GPT + ESP: image.sh) into
# the local Glance with the release `pipeline run`, with `curl -T -` (chunked PUT
# /v2/images/ID/file) and with `openstack image create --file`, alternating, at each size of
# BENCH_SIZES (GiB, default "1 4"). Prints one table per size and writes them all to
# .run/bench/publish.md. Figures, never pass/fail. Every image it creates is deleted.
#
# The local cloud of CLOUD_DIR (default .run/cloud) is started here if it is not running
# (`make cloud-up`, with the harness's CLOUD_*_PORT settings), and stopped again at the end in
# that case (BENCH_KEEP_CLOUD=1 leaves it up). BENCH_ROUNDS (default 3) rounds per size.
# BENCH_MIB="64 256" uses images of that many MiB instead: for smoke tests only.
#
# On a machine of 2 or more CPUs a second series follows (BENCH_SEPARATE_CORES=0 skips it):
# the same rounds with the cloud's servers pinned to CPU 0 and the clients to the others
# (taskset), as when Glance runs on a machine of its own; written to
# .run/bench/publish-separate-cores.md.
#
# `pipeline run` needs a flake: a generated one per size (outside any git tree, under the
# cache directory) whose images.lucy copies the cached image into the store once, so every
# round's build is a no-op and the pipeline publishes the same bytes as the other two clients.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

read -r -a sizes <<<"${BENCH_SIZES:-1 4}"
mapfile -t sizes < <(bench_size_args "${sizes[@]}")

bash "$here/install.sh"
bench_pipeline
images=()
for s in "${sizes[@]}"; do images+=("$("$here/image.sh" "$s")"); done
# shellcheck source=scripts/nix-env.sh
. scripts/nix-env.sh
bench_clouds_up local
# measure.py counts the CPU these servers use during each measured run.
export BENCH_CLOUD_DIR=$cloud_dir BENCH_SERVER_CLOUDS=local

cases=()
warm=()
for image in "${images[@]}"; do
  bench_lucy_flake "$image"
  # Every client reads the same file, the pipeline's store copy: one file per size in the
  # page cache, so no client is measured reading from the disk while another hits the cache.
  cases+=(--case "$store_out/nixos.qcow2:$flake")
  warm+=("$store_out/nixos.qcow2")
done
bench_pipeline_yaml "$out_dir/publish.yaml" "[lucy]" 1

echo "bench: warming the page cache (reading ${warm[*]})" >&2
cat "${warm[@]}" >/dev/null

python3 -B "$here/publish.py" --pipeline "$pipeline" --root "$root" "${cases[@]}" \
  --pipeline-file "$out_dir/publish.yaml" --cloud local \
  --openstack "$CLOUD_VENV/bin/openstack" --rounds "$rounds" --out "$out_dir/publish.md"

if [ "$(nproc)" -ge 2 ] && [ "${BENCH_SEPARATE_CORES:-1}" != 0 ]; then
  echo "bench: again with the cloud's servers on CPU 0 and the clients on CPUs 1-$(($(nproc) - 1))" >&2
  bench_pin_clouds 0 local
  trap 'bench_pin_clouds "0-$(($(nproc) - 1))" local; bench_stop_clouds' EXIT
  taskset -c "1-$(($(nproc) - 1))" python3 -B "$here/publish.py" --pipeline "$pipeline" \
    --root "$root" "${cases[@]}" --pipeline-file "$out_dir/publish.yaml" --cloud local \
    --openstack "$CLOUD_VENV/bin/openstack" --rounds "$rounds" \
    --out "$out_dir/publish-separate-cores.md"
fi
