#!/usr/bin/env bash
# Install what the CI test (tests/it/ci.rs) needs to run docs/ci/gitlab-ci.yml for real:
#   - rsync and jq from Debian: gitlab-ci-local copies the checkout with rsync, and the CI
#     file's smoke test reads `pipeline images --json` with jq;
#   - gitlab-ci-local, pinned by tools/ci/package-lock.json and installed with `npm ci` into
#     ${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/ci-tools/<key>, outside the checkout, keyed by
#     the lock file so a changed pin gets a fresh install. 4.55.0 is the last release that
#     runs on Node 20 (4.75 needs Node >= 22).
# Idempotent. Prints the directory holding the `gitlab-ci-local` binary on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=$here/../tools/ci
APT_WHO=install-ci
# shellcheck source=scripts/apt.sh
. "$here/apt.sh"
die() { apt_die "$@"; }

# Debian packages, only when their command is missing.
wanted=()
for pair in rsync:rsync jq:jq; do
  command -v "${pair#*:}" >/dev/null 2>&1 || wanted+=("${pair%%:*}")
done
if [ "${#wanted[@]}" -gt 0 ]; then
  apt_need_root "${wanted[@]}"
  echo "install-ci: installing ${wanted[*]}" >&2
  apt_install "${wanted[@]}"
fi

command -v node >/dev/null || die "node not found (gitlab-ci-local 4.55 needs Node >= 18)"
command -v npm >/dev/null || die "npm not found"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' \
  || die "node $(node --version) is too old (gitlab-ci-local 4.55 needs Node >= 18)"

key=$(cat "$tools/package.json" "$tools/package-lock.json" | sha256sum | cut -c1-16)
root=${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/ci-tools
dir=$root/$key
if [ ! -e "$dir/.complete" ]; then
  mkdir -p "$root"
  # Two checkouts may install at once: one installs, the other waits and reuses it.
  exec 9> "$root/.install.lock"
  flock 9
  if [ ! -e "$dir/.complete" ]; then
    echo "install-ci: npm ci of gitlab-ci-local into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$tools/package.json" "$tools/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) \
      || die "npm ci failed in $dir"
    touch "$dir/.complete"
  fi
fi
[ -x "$dir/node_modules/.bin/gitlab-ci-local" ] || die "$dir has no gitlab-ci-local"
echo "$dir/node_modules/.bin"
