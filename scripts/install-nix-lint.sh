#!/usr/bin/env bash
# Install the production flake's linters, pinned: deadnix (unused bindings) and nixpkgs-fmt
# (formatting), with `cargo install --locked` from crates.io into
# ${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/nix-lint/<versions>, outside the checkout, so a
# fresh clone reuses them (about 50 s of compiling on 2 CPUs the first time). Neither is in
# Debian bookworm. Idempotent. Prints the directory holding both binaries on stdout.
set -euo pipefail

deadnix=1.3.1
nixpkgs_fmt=1.3.0
die() { echo "install-nix-lint: $*" >&2; exit 1; }

root=${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/nix-lint
dir=$root/deadnix-$deadnix-nixpkgs-fmt-$nixpkgs_fmt
if [ ! -e "$dir/.complete" ]; then
  command -v "${CARGO:-cargo}" >/dev/null || die "cargo not found (the Rust toolchain builds both)"
  mkdir -p "$root"
  # Two checkouts may install at once: one installs, the other waits and reuses it.
  exec 9> "$root/.install.lock"
  flock 9
  if [ ! -e "$dir/.complete" ]; then
    echo "install-nix-lint: cargo install deadnix $deadnix and nixpkgs-fmt $nixpkgs_fmt into $dir" >&2
    rm -rf "$dir"
    for crate in "deadnix@$deadnix" "nixpkgs-fmt@$nixpkgs_fmt"; do
      "${CARGO:-cargo}" install --quiet --locked --root "$dir" "$crate" >&2 \
        || die "cargo install $crate failed"
    done
    touch "$dir/.complete"
  fi
fi
for tool in deadnix nixpkgs-fmt; do
  [ -x "$dir/bin/$tool" ] || die "$dir/bin has no $tool"
done
echo "$dir/bin"
