#!/usr/bin/env bash
# `make bench` part 1: the release `pipeline verify` against sha512sum / openssl dgst -sha512
# (and md5sum / sha256sum for context) on the same cached 1 GiB qcow2, plus the same image
# added to the Nix store, where verify also recomputes the NAR hash in the same read.
# Prints a table and writes it to .run/bench/verify.md. Figures, never pass/fail.
#
# BENCH_ROUNDS (default 3) sets the number of alternating rounds; BENCH_NIX=0 skips the
# store copy (it needs nix-store).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$here/install.sh"
bench_pipeline

image=$("$here/image.sh")
files=("$image")
store_args=()
if [ "${BENCH_NIX:-1}" != 0 ] && command -v nix-store >/dev/null 2>&1; then
  # shellcheck source=scripts/nix-env.sh
  . scripts/nix-env.sh
  mkdir -p "$out_dir"
  echo "bench: adding the image to the Nix store" >&2
  store=$(nix-store --add "$image")
  # An indirect GC root, so a garbage collection elsewhere cannot delete the copy mid-run;
  # it goes away with .run/ (make clean).
  nix-store --add-root "$out_dir/verify-1g.gcroot" --indirect --realise "$store" >/dev/null
  files+=("$store")
  store_args=(--store-image "$store")
else
  echo "bench: skipping the Nix store copy (BENCH_NIX=0 or no nix-store)" >&2
fi

echo "bench: warming the page cache (reading ${files[*]})" >&2
cat "${files[@]}" >/dev/null

echo "bench: $rounds rounds, tools alternating" >&2
python3 -B "$here/verify.py" --pipeline "$pipeline" --root "$root" --image "$image" \
  "${store_args[@]}" --profile lucy --rounds "$rounds" --out "$out_dir/verify.md"
