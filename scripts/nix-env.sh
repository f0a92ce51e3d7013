# Offline Nix settings for the tests and the demo, without editing /etc/nix/nix.conf.
# Source it (POSIX sh or bash):  . scripts/nix-env.sh    -> exports NIX_CONFIG
# mk/nix.mk sources it in a subshell and exports the result to every make recipe.
#
# Why each setting (Nix 2.8 from Debian bookworm, no network, no daemon):
# - substituters empty: otherwise every cold build first retries cache.nixos.org for seconds.
# - flake-registry: 2.8 rejects '' ("unable to download ''"), so point at an empty local file;
#   written under $HEPHAESTUS_NIX_DIR, default ${TMPDIR:-/tmp}/hephaestus-nix.
# - sandbox = false: the fixture builders call host tools (/usr/bin/qemu-img, sfdisk, mtools).
# - build-users-group: nixbld when that group exists, else empty (builds run as the caller).
# The Rust integration tests build the same settings themselves (tests/it/nix.rs).

_heph_nix_dir=${HEPHAESTUS_NIX_DIR:-${TMPDIR:-/tmp}/hephaestus-nix}
mkdir -p "$_heph_nix_dir"
printf '{"flakes":[],"version":2}\n' > "$_heph_nix_dir/empty-registry.json"
if getent group nixbld >/dev/null 2>&1; then _heph_nix_group=nixbld; else _heph_nix_group=; fi
NIX_CONFIG="experimental-features = nix-command flakes
substituters =
flake-registry = $_heph_nix_dir/empty-registry.json
sandbox = false
build-users-group = $_heph_nix_group"
export NIX_CONFIG
unset _heph_nix_dir _heph_nix_group
