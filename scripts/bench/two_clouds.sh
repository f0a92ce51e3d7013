#!/usr/bin/env bash
# `make bench-two-clouds`: one build published into two clouds from one read of the file.
# The release `pipeline run` of a one-profile pipeline (lucy = a store copy of the cached 1 GiB
# qcow2 of image.sh), alternating rounds of:
#   (a) --cloud local                      one cloud, the baseline
#   (b) --cloud local --cloud local-prod   both clouds in one run (needs a pipeline that takes
#                                          --cloud more than once; the script fails, saying
#                                          so, when the run report lacks the `clouds` list)
#   (c) --cloud local, then --cloud local-prod, as two runs
# Prints a table (wall medians, (b)/(a) against its target of 1.2, (c)/(a)) and writes it to
# .run/bench/two-clouds.md. Every image it creates is deleted, in both clouds.
#
# The clouds local and local-prod of CLOUD_DIR (default .run/cloud) are started here if they
# are not running (`make cloud-up`, with the harness's CLOUD_*_PORT settings), and stopped
# again at the end in that case (BENCH_KEEP_CLOUD=1 leaves them up). BENCH_ROUNDS (default 3);
# BENCH_CASES (default "a b c") picks cases; BENCH_MIB=N uses an N MiB image (smoke tests).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$here/install.sh"
bench_pipeline
image=$("$here/image.sh" "$(bench_size_args 1)")
# shellcheck source=scripts/nix-env.sh
. scripts/nix-env.sh
bench_clouds_up local local-prod
# measure.py counts the CPU these servers use during each measured run.
export BENCH_CLOUD_DIR=$cloud_dir BENCH_SERVER_CLOUDS="local local-prod"

bench_lucy_flake "$image"
bench_pipeline_yaml "$out_dir/two-clouds.yaml" "[lucy]" 1

echo "bench: warming the page cache (reading $store_out/nixos.qcow2)" >&2
cat "$store_out/nixos.qcow2" >/dev/null

python3 -B "$here/two_clouds.py" --pipeline "$pipeline" --root "$root" --image "$image" \
  --pipeline-file "$out_dir/two-clouds.yaml" --flake "$flake" --clouds "local local-prod" \
  --cases "${BENCH_CASES:-a b c}" --openstack "$CLOUD_VENV/bin/openstack" \
  --rounds "$rounds" --out "$out_dir/two-clouds.md"
