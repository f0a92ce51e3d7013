# shellcheck shell=bash
# Shared by the installers (scripts/install-*.sh, scripts/bench/install.sh); source it after
# setting APT_WHO to the installer's name (used in every message).
#
# An installer first finds what is missing without root, and asks for root only when apt must
# run: a machine that has everything passes `make install-deps` as any user.
# Every apt transaction is simulated first and refused when it would remove a package, or
# replace one the caller names, so a working tool is never swapped out behind the caller's back.

apt_die() { echo "$APT_WHO: $*" >&2; exit 1; }

# apt_need_root WHAT...: stop unless root, naming what is missing.
apt_need_root() {
  [ "$(id -u)" -eq 0 ] || apt_die "missing: $*; run as root to install them (apt-get), or install them yourself"
}

# apt_install [--keep PKG]... PKG...: install PKGs (names may carry /suite) with apt-get, as root,
# after `apt-get update`. --keep names an installed package that must not be replaced.
apt_install() {
  local keep=() plan refuse='^Remv'
  while [ "${1:-}" = --keep ]; do keep+=("$2"); shift 2; done
  for k in "${keep[@]}"; do refuse="$refuse|^Inst $k \\["; done
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  plan=$(apt-get install -s -y --no-install-recommends "$@")
  if printf '%s\n' "$plan" | grep -Eq "$refuse"; then
    echo "$APT_WHO: refusing: apt would remove or replace installed packages:" >&2
    printf '%s\n' "$plan" | grep -E "$refuse" >&2
    exit 1
  fi
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
