#!/usr/bin/env bash
# The whole image lifecycle on the two local clouds (`local` = staging, `local-prod` =
# production), as `make demo` runs it: publish, promote, publish a change, roll back in both
# clouds, see promotion and the nightly hold the rolled-back build (printing the metrics file
# it wrote), and show both clouds.
#
# Needs: the pipeline binary ($PIPELINE), the clouds up with OS_CLIENT_CONFIG_FILE pointing at
# their clouds.yaml, and the offline Nix settings (NIX_CONFIG) exported by the Makefile.
set -euo pipefail

pipeline="${PIPELINE:?set PIPELINE to the pipeline binary}"
work="${DEMO_DIR:?set DEMO_DIR to a scratch directory}"
step() { printf '\n=== %s\n' "$*" >&2; }
run() { printf '+ pipeline %s\n' "$*" >&2; "$pipeline" "$@"; }

step "what the project holds"
run list
run validate

step "1. publish the five fixture images into staging (build, verify, boot with a config drive, upload)"
mkdir -p "$work"
run run publish-all --cloud local --flake fixtures/flake --report "$work/publish.json"
# Each image booted with its own config drive and printed the random host name it read there.
python3 - "$work/publish.json" <<'HOSTS'
import json, sys
for image in json.load(open(sys.argv[1]))["images"]:
    print(f"  {image['profile']}: boot check {image['boot_metadata']}, the image reported "
          f"host name {image['boot_hostname']} ({image['boot_seconds'] or 0:.1f} s)", file=sys.stderr)
HOSTS

step "2. promote them to production"
run promote --from local --to local-prod

step "3. a change to lucy and makise: the fixture flake with another generation file"
rm -rf "$work/flake-changed"
cp -R fixtures/flake "$work/flake-changed"
echo "demo-change" > "$work/flake-changed/generation"
run run publish-all --cloud local --flake "$work/flake-changed" --profile lucy --profile makise
run promote --from local --to local-prod --profile lucy --profile makise

step "4. lucy's change is bad: roll it back in production; promotion then holds it"
run rollback lucy --cloud local-prod
run promote --from local --to local-prod --profile lucy

step "5. roll it back in staging too; the nightly still builds it, and holds it"
run rollback lucy --cloud local
rm -f "$work/nightly.prom"
run run nightly --cloud local --flake "$work/flake-changed" --profile lucy --metrics "$work/nightly.prom"

step "5b. the nightly's metrics, as node_exporter's textfile collector reads them"
cat "$work/nightly.prom" >&2

step "6. both clouds: current, previous and rolled-back generations"
run images --cloud local
run images --cloud local-prod
run check --cloud local
run check --cloud local-prod
# Exit 5 would mean a current image is older than a week or than its replace_frequency.
run images --cloud local --stale-after 7d
