# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the scripts
# lib.sh - helpers shared by the benchmark scripts (sourced, not run). Sourcing it cds to the
# repository root and sets:
#   root     the repository root          here     scripts/bench (relative to root)
#   out_dir  root/.run/bench              rounds   BENCH_ROUNDS (default 3)
#   cache    the benchmark cache (${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/bench)
#   cloud_dir  CLOUD_DIR, else root/.run/cloud (absolute)
#
# bench_pipeline            release build of `pipeline`; sets $pipeline to the binary, found
#                           through `cargo metadata`, so CARGO_TARGET_DIR (and a target-dir
#                           of a cargo config) is honoured
# bench_clouds_up NAME...   makes sure these clouds of $cloud_dir run: starts those that do
#                           not (`make cloud-up`, with the harness's CLOUD_*_PORT and
#                           CLOUD_GLANCE_WORKERS settings from the environment), stops them
#                           again at exit unless BENCH_KEEP_CLOUD=1, and sources env.sh
#                           (OS_CLIENT_CONFIG_FILE, CLOUD_VENV). $bench_started lists the
#                           clouds this script started. It sets an EXIT trap that runs
#                           bench_stop_clouds: a caller's own EXIT trap must call that too.
# bench_clouds_restart      stops and starts again the clouds this script started (to change
#                           CLOUD_GLANCE_WORKERS, which the caller exports first)
# bench_glance_workers NAME the `workers` a running cloud's Glance was started with
# bench_flake DIR SPEC...   writes a flake whose images.<attr> are store copies of cached
#                           images, builds them (GC roots under $out_dir) and prints
#                           "ATTR STORE_PATH" lines; SPEC is ATTR:BOOT_MODE:DRV_NAME:FILE
#                           (BOOT_MODE uefi or legacy-bios; DRV_NAME must differ between
#                           the attributes, which also makes distinct store paths of one file)
# bench_lucy_flake IMAGE    the flake $cache/flake-publish-SIZE whose images.lucy is a store
#                           copy of IMAGE (a verify-SIZE.qcow2 of image.sh); sets $flake and
#                           $store_out (the copy's store path)
# bench_pipeline_yaml FILE PROFILES CONCURRENCY
#                           writes a publishing pipeline (evaluate, build, tag, verify, upload
#                           as hephaestus-bench-{profile}; boot-check skipped with a reason)
#                           for the YAML list PROFILES, e.g. "[lucy]"
# bench_pin_clouds CPUS NAME...
#                           sets the CPU affinity (taskset) of every thread of these running
#                           clouds' servers, Keystone and Glance, masters and workers, to CPUS
#                           (e.g. 0; "0-$(($(nproc) - 1))" gives them every CPU again)
# bench_size_args           the image sizes to use, one per line, as image.sh takes them:
#                           BENCH_MIB (MiB, for smoke tests; a list for bench-publish) wins,
#                           else the GiB sizes given as arguments

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
here=scripts/bench
rounds=${BENCH_ROUNDS:-3}
out_dir=$root/.run/bench
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/bench
cloud_dir=${CLOUD_DIR:-$root/.run/cloud}
mkdir -p "$cloud_dir" "$out_dir"
cloud_dir=$(cd "$cloud_dir" && pwd)
bench_started=""

bench_pipeline() {
  echo "bench: cargo build --release" >&2
  ${CARGO:-cargo} build --release --locked --bin pipeline
  local target
  target=$(${CARGO:-cargo} metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  pipeline=$target/release/pipeline
  if [ ! -x "$pipeline" ]; then
    echo "bench: the release build is not at $pipeline" >&2
    exit 1
  fi
}

# The clouds whose servers up.sh started with $cloud_dir's configuration and which still run.
bench_running_clouds() {
  (
    CLOUD_DIR=$cloud_dir
    # shellcheck source=scripts/cloud/common.sh
    . "$root/scripts/cloud/common.sh"
    for c in local local-prod local-small local-short local-short-b; do
      if ours "$c" keystone >/dev/null && ours "$c" glance-api >/dev/null; then echo "$c"; fi
    done
  )
}

bench_stop_clouds() {
  if [ -n "$bench_started" ] && [ "${BENCH_KEEP_CLOUD:-0}" != 1 ]; then
    make --no-print-directory -f mk/cloud.mk cloud-down CLOUD_DIR="$cloud_dir" \
      CLOUD_NAMES="$bench_started" || true
  fi
}

bench_clouds_up() {
  local running c names=()
  running=" $(bench_running_clouds | tr '\n' ' ')"
  for c in $running; do names+=("$c"); done
  for c in "$@"; do
    case "$running " in
      *" $c "*) ;;
      *)
        bench_started="${bench_started:+$bench_started }$c"
        names+=("$c")
        ;;
    esac
  done
  if [ -n "$bench_started" ]; then
    trap bench_stop_clouds EXIT
    # The running ones stay as they are, and clouds.yaml keeps their entries.
    make --no-print-directory -f mk/cloud.mk cloud-up CLOUD_DIR="$cloud_dir" \
      CLOUD_NAMES="${names[*]}"
  fi
  for c in "$@"; do
    if ! grep -q "^  $c:\$" "$cloud_dir/clouds.yaml" 2>/dev/null; then
      echo "bench: $cloud_dir/clouds.yaml has no entry for $c (run make cloud-up CLOUD_DIR=$cloud_dir)" >&2
      exit 1
    fi
  done
  # shellcheck source=/dev/null
  . "$cloud_dir/env.sh"
}

bench_clouds_restart() {
  [ -n "$bench_started" ] || return 1
  make --no-print-directory -f mk/cloud.mk cloud-down CLOUD_DIR="$cloud_dir" \
    CLOUD_NAMES="$bench_started"
  make --no-print-directory -f mk/cloud.mk cloud-up CLOUD_DIR="$cloud_dir" \
    CLOUD_NAMES="$bench_started"
}

bench_pin_clouds() {
  local cpus=$1 c server pid kid
  shift
  for c in "$@"; do
    for server in keystone glance-api; do
      pid=$(
        CLOUD_DIR=$cloud_dir
        # shellcheck source=scripts/cloud/common.sh
        . "$root/scripts/cloud/common.sh"
        ours "$c" "$server"
      ) || continue
      for kid in "$pid" $(pgrep -P "$pid"); do
        taskset -a -pc "$cpus" "$kid" >/dev/null
      done
    done
  done
}

bench_glance_workers() {
  sed -n 's/^workers = \([0-9]*\)$/\1/p' "$cloud_dir/$1/etc/glance-api.gunicorn.py"
}

bench_flake() {
  local dir=$1 spec attr boot name file stamp attrs=() names=() installables=()
  shift
  mkdir -p "$dir"
  {
    echo "# Generated by scripts/bench/lib.sh: cached benchmark images as images.<profile>"
    echo "# (store copies; needs sandbox = false)."
    echo "{"
    echo "  outputs = { self }: {"
    echo "    images = {"
    for spec in "$@"; do
      IFS=: read -r attr boot name file <<<"$spec"
      stamp=$(stat -c '%s-%Y' "$file")
      attrs+=("$attr")
      names+=("$name")
      installables+=("$dir#images.$attr")
      cat <<NIX
      $attr = builtins.derivation {
        name = "$name";
        system = "x86_64-linux";
        src = "$file";
        stamp = "$stamp";
        builder = "/bin/sh";
        args = [ "-c" ''
          set -eu
          /bin/mkdir -p \$out/nix-support
          /bin/cp "\$src" \$out/nixos.qcow2
          echo '{"file":"'\$out'/nixos.qcow2","format":"qcow2","boot_mode":"$boot","label":"bench","system":"x86_64-linux"}' > \$out/nix-support/image-info.json
        '' ];
      };
NIX
    done
    echo "    };"
    echo "  };"
    echo "}"
  } >"$dir/flake.nix.tmp"
  mv "$dir/flake.nix.tmp" "$dir/flake.nix"
  echo "bench: building $dir's store copies of the images (a no-op once built)" >&2
  # (Nix 2.8 has no --print-out-paths; --json does, in an order of its own: each output is
  # matched to its attribute by its derivation name.)
  local outs i out
  outs=$(nix build --no-link --json "${installables[@]}" | python3 -c '
import json, sys
outs = [d["outputs"]["out"] for d in json.load(sys.stdin)]
for name in sys.argv[1:]:
    match = [o for o in outs if o.rsplit("/", 1)[-1][33:] == name]
    print(match[0] if match else "")
' "${names[@]}")
  i=0
  while read -r out; do
    if [ -z "$out" ]; then
      echo "bench: nix build gave no store path named ${names[$i]} (images.${attrs[$i]})" >&2
      exit 1
    fi
    # An indirect GC root, so a garbage collection elsewhere cannot delete the copy mid-run;
    # it goes away with .run/ (make clean).
    nix-store --add-root "$out_dir/$(basename "$dir")-${attrs[$i]}.gcroot" --indirect \
      --realise "$out" >/dev/null
    echo "${attrs[$i]} $out"
    i=$((i + 1))
  done <<<"$outs"
}

bench_size_args() {
  local s
  if [ -n "${BENCH_MIB:-}" ]; then
    for s in $BENCH_MIB; do echo "${s}m"; done
  else
    for s in "$@"; do echo "$s"; done
  fi
}

bench_lucy_flake() {
  local label name built
  label=$(basename "$1" .qcow2)
  label=${label#verify-}
  # The 1 GiB copy keeps the derivation it always had (same store path, no new copy).
  name=hephaestus-bench-image
  [ "$label" = 1g ] || name=hephaestus-bench-image-$label
  flake=$cache/flake-publish-$label
  built=$(bench_flake "$flake" "lucy:uefi:$name:$1")
  store_out=${built#lucy }
}

bench_pipeline_yaml() {
  local name
  name=bench-$(basename "$1" .yaml)
  cat >"$1" <<YAML
# Generated by scripts/bench/lib.sh for \`make bench\`: publish benchmark images.
name: $name
description: make bench - publish benchmark images (random bytes)
cloud: local
profiles: $2
concurrency: $3
flake: nix
stages:
  - evaluate
  - build
  - tag
  - verify
  - boot-check: {skip: "benchmark images are random bytes; this measures the publish"}
  - upload:
      name: "hephaestus-bench-{profile}"
YAML
}
