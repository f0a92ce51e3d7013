# Exports NIX_CONFIG: the offline Nix settings of scripts/nix-offline.conf (which says why each
# is there), with its empty flake registry written under $HEPHAESTUS_NIX_DIR (default
# ${TMPDIR:-/tmp}/hephaestus-nix) and nixbld as the build users' group when it exists.
# Source it (POSIX sh or bash) from the repository root:  . scripts/nix-env.sh
# or from anywhere with HEPHAESTUS_NIX_CONF naming the settings file (mk/nix.mk does).

_heph_nix_conf=${HEPHAESTUS_NIX_CONF:-scripts/nix-offline.conf}
_heph_nix_dir=${HEPHAESTUS_NIX_DIR:-${TMPDIR:-/tmp}/hephaestus-nix}
mkdir -p "$_heph_nix_dir"
printf '{"flakes":[],"version":2}\n' > "$_heph_nix_dir/empty-registry.json"
if getent group nixbld >/dev/null 2>&1; then _heph_nix_group=nixbld; else _heph_nix_group=; fi
NIX_CONFIG=$(sed -e '/^#/d' \
  -e "s|@FLAKE_REGISTRY@|$_heph_nix_dir/empty-registry.json|" \
  -e "s|@BUILD_USERS_GROUP@|$_heph_nix_group|" "$_heph_nix_conf")
export NIX_CONFIG
unset _heph_nix_conf _heph_nix_dir _heph_nix_group
