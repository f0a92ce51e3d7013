#!/usr/bin/env bash
# `make bench-promote`: copy the cached 1 GiB qcow2 (the one of verify.sh) from the local
# staging cloud into the local production cloud with the release `pipeline promote`, and with
# `openstack image save` followed by `openstack image create --file`, alternating. Prints a
# table (wall time, peak RSS, bytes written to local disk) and writes it to
# .run/bench/promote.md. Figures, never pass/fail. Every image it creates is deleted.
#
# The clouds local and local-prod of CLOUD_DIR (default .run/cloud) are started here if they
# are not running (`make cloud-up`, with the harness's CLOUD_*_PORT settings), and stopped
# again at the end in that case (BENCH_KEEP_CLOUD=1 leaves them up). BENCH_ROUNDS (default 3).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$here/install.sh"
bench_pipeline
image=$("$here/image.sh")
bench_clouds_up local local-prod

echo "bench: warming the page cache (reading $image)" >&2
cat "$image" >/dev/null

python3 -B "$here/promote.py" --pipeline "$pipeline" --root "$root" --image "$image" \
  --source local --target local-prod --openstack "$CLOUD_VENV/bin/openstack" \
  --rounds "$rounds" --scratch "$out_dir/promote-scratch" --out "$out_dir/promote.md"
