#!/usr/bin/env bash
# install.sh - build the Keystone + Glance virtualenv from requirements.lock (PyPI only).
# The venv is cached at ${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/glance-venv/<key>; this is a
# no-op when it is already complete. Prints the venv path on stdout.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

die() { echo "install.sh: ERROR: $*" >&2; exit 1; }

if [ -e "$VENV_STAMP" ]; then echo "$VENV_DIR"; exit 0; fi
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (install python3 and python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$PYTHON is older than 3.10 (keystone 29 / glance 32 need >= 3.10)"

mkdir -p "$VENV_ROOT"
# Two checkouts may install at once: one builds, the other waits and reuses it.
exec 9> "$VENV_ROOT/.install.lock"
flock 9
if [ -e "$VENV_STAMP" ]; then echo "$VENV_DIR"; exit 0; fi

T0=$EPOCHREALTIME
echo "install.sh: building $VENV_DIR (about 1 min, 290 MB) ..." >&2
rm -rf "$VENV_DIR"   # a half-built venv from an interrupted run
"$PYTHON" -m venv "$VENV_DIR" || die "$PYTHON -m venv failed (on Debian: apt-get install python3-venv)"
log=$VENV_DIR/pip-install.log
"$VENV_DIR/bin/pip" install --disable-pip-version-check --no-input -r "$LOCK_FILE" > "$log" 2>&1 || {
  tail -n 30 "$log" >&2
  die "pip install -r $LOCK_FILE failed (full log: $log)"
}
cp "$LOCK_FILE" "$VENV_DIR/requirements.lock"
touch "$VENV_STAMP"
awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN {printf "install.sh: venv ready in %.1f s\n", b - a}' >&2
echo "$VENV_DIR"
