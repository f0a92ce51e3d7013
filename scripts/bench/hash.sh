#!/usr/bin/env bash
# `make bench-hash`: the cost of hashing on this CPU. md5, sha256 and sha512 from the crates
# the pipeline uses (md-5, sha2 0.11) against ring, aws-lc-rs and the sha2-asm / md5-asm
# assembly, over one in-memory buffer, plus the pipeline's one-read cost of all three.
# Prints a table and writes it to .run/bench/hash.md. Figures, never pass/fail.
#
# The comparison is its own Cargo package (bench/hash), so the pipeline never compiles ring or
# aws-lc-rs. sha2 0.11 picks its backend with --cfg flags at compile time, so each forced
# backend is one more release build of that package (--no-default-features: sha2 and md-5
# only), in its own target directory. A forced build that does not compile is reported in the
# table's notes, with the compiler's error.
#
# BENCH_ROUNDS (default 5) sets the rounds; BENCH_HASH_MIB (default 1024) the buffer size.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root/bench/hash"
rounds=${BENCH_ROUNDS:-5}
mib=${BENCH_HASH_MIB:-1024}
out=$root/.run/bench/hash.md
cargo=${CARGO:-cargo}
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }

echo "bench: cargo build --release (sha2 0.11, md-5, ring, aws-lc-rs, sha2-asm, md5-asm)" >&2
unset RUSTFLAGS
# Its own target directory, also when CARGO_TARGET_DIR points elsewhere.
"$cargo" build --release --locked --quiet --target-dir target
builds=("$PWD/target/release/hash-bench")
notes=("$(rustc --version), release profile as the pipeline's; the default build (no RUSTFLAGS) is what the pipeline runs")

# name | RUSTFLAGS | CPU flag it needs ("" for none)
variants=(
  'soft|--cfg sha2_backend="soft"|'
  'soft-compact|--cfg sha2_backend="soft" --cfg sha2_backend_soft="compact"|'
  'x86-sha|--cfg sha2_256_backend="x86-sha" -C target-feature=+sha,+sse4.1|sha_ni'
  'x86-avx2|--cfg sha2_512_backend="x86-avx2" -C target-feature=+avx2|avx2'
)
for v in "${variants[@]}"; do
  IFS='|' read -r name rustflags needs <<<"$v"
  if [ -n "$needs" ] && ! has "$needs"; then
    notes+=("sha2 0.11 with \`$rustflags\`: not built, this CPU lacks $needs")
    continue
  fi
  dir=target/cfg-$name
  echo "bench: cargo build --release --no-default-features, RUSTFLAGS='$rustflags'" >&2
  log=$(mktemp)
  if RUSTFLAGS=$rustflags "$cargo" build --release --locked --quiet --no-default-features \
    --target-dir "$dir" 2>"$log"; then
    builds+=("$PWD/$dir/release/hash-bench")
  else
    # The first error and where it is, without this machine's registry path.
    error=$(grep -m1 -A1 '^error' "$log" | sed -E 's|[^ ]*/registry/src/[^/]*/||; s/^ *//' |
      paste -sd' ' -)
    notes+=("sha2 0.11 with \`$rustflags\` does not compile: \`$error\`")
    echo "bench: that build failed: $error" >&2
  fi
  rm -f "$log"
done

echo "bench: $rounds rounds of $mib MiB, builds and implementations alternating" >&2
note_args=()
for n in "${notes[@]}"; do note_args+=(--note "$n"); done
"${builds[0]}" drive --rounds "$rounds" --mib "$mib" --out "$out" "${note_args[@]}" "${builds[@]}"
