#!/usr/bin/env bash
# `make bench-promote`: copy the cached 1 GiB qcow2 (the one of verify.sh) from the local
# staging cloud into the local production cloud with the release `pipeline promote`, and with
# `openstack image save` followed by `openstack image create --file`, alternating. Prints a
# table (wall time, peak RSS, bytes written to local disk) and writes it to
# .run/bench/promote.md. Figures, never pass/fail. Every image it creates is deleted.
#
# The clouds come from `make cloud-up` (started here if they are not running, and stopped
# again at the end in that case; BENCH_KEEP_CLOUD=1 leaves them up). BENCH_ROUNDS (default 3).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
here=scripts/bench
rounds=${BENCH_ROUNDS:-3}
out_dir=$root/.run/bench
cloud_dir=$root/.run/cloud
mkdir -p "$out_dir"

bash "$here/install.sh"
echo "bench: cargo build --release" >&2
${CARGO:-cargo} build --release --locked --bin pipeline
pipeline=$root/target/release/pipeline
image=$("$here/image.sh")

started_cloud=0
if ! { [ -f "$cloud_dir/env.sh" ] &&
  curl -fsS -o /dev/null "http://127.0.0.1:${CLOUD_LOCAL_GLANCE_PORT:-19292}/healthcheck" 2>/dev/null &&
  curl -fsS -o /dev/null "http://127.0.0.1:${CLOUD_PROD_GLANCE_PORT:-29292}/healthcheck" 2>/dev/null; }; then
  make --no-print-directory -f mk/cloud.mk cloud-up CLOUD_DIR="$cloud_dir"
  started_cloud=1
fi
stop_cloud() {
  if [ "$started_cloud" = 1 ] && [ "${BENCH_KEEP_CLOUD:-0}" != 1 ]; then
    make --no-print-directory -f mk/cloud.mk cloud-down CLOUD_DIR="$cloud_dir" || true
  fi
}
trap stop_cloud EXIT
# shellcheck source=/dev/null
. "$cloud_dir/env.sh"

echo "bench: warming the page cache (reading $image)" >&2
cat "$image" >/dev/null

python3 -B "$here/promote.py" --pipeline "$pipeline" --root "$root" --image "$image" \
  --source local --target local-prod --openstack "$CLOUD_VENV/bin/openstack" \
  --rounds "$rounds" --scratch "$out_dir/promote-scratch" --out "$out_dir/promote.md"
