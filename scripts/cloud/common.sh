# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the scripts
# common.sh - settings and helpers shared by install.sh, up.sh and down.sh (sourced, not run).
#
# Independent clouds, each a Keystone + Glance pair on 127.0.0.1 with its own
# SQLite databases, file store and fernet keys:
#   local       (staging)     keystone $CLOUD_LOCAL_KEYSTONE_PORT, glance $CLOUD_LOCAL_GLANCE_PORT
#   local-prod  (production)  keystone $CLOUD_PROD_KEYSTONE_PORT,  glance $CLOUD_PROD_GLANCE_PORT
#   local-small (tests only)  keystone $CLOUD_SMALL_KEYSTONE_PORT, glance $CLOUD_SMALL_GLANCE_PORT,
#                             whose Glance refuses images over $CLOUD_SMALL_SIZE_CAP bytes;
#                             both served over HTTPS with a certificate of a throwaway CA
#                             ($CLOUD_DIR/tls, made by up.sh, never committed)
#   local-short, local-short-b (tests only) keystone $CLOUD_SHORT_KEYSTONE_PORT /
#                             $CLOUD_SHORT_B_KEYSTONE_PORT, glance $CLOUD_SHORT_GLANCE_PORT /
#                             $CLOUD_SHORT_B_GLANCE_PORT, whose tokens live
#                             $CLOUD_SHORT_TOKEN_SECONDS seconds
# Non-default ports so a developer's own OpenStack on 5000/9292 is left alone.

CLOUD_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLOUD_SCRIPTS/../.." && pwd)
CLOUD_DIR=${CLOUD_DIR:-$REPO_ROOT/.run/cloud}
PYTHON=${PYTHON:-python3}
HOST=127.0.0.1
REGION=${CLOUD_REGION:-RegionOne}
# Only Glance is listed in it (public endpoint), for the tests of region_name.
SECOND_REGION=RegionTwo
CLOUD_LOCAL_KEYSTONE_PORT=${CLOUD_LOCAL_KEYSTONE_PORT:-15000}
CLOUD_LOCAL_GLANCE_PORT=${CLOUD_LOCAL_GLANCE_PORT:-19292}
CLOUD_PROD_KEYSTONE_PORT=${CLOUD_PROD_KEYSTONE_PORT:-25000}
CLOUD_PROD_GLANCE_PORT=${CLOUD_PROD_GLANCE_PORT:-29292}
CLOUD_SMALL_KEYSTONE_PORT=${CLOUD_SMALL_KEYSTONE_PORT:-35000}
CLOUD_SMALL_GLANCE_PORT=${CLOUD_SMALL_GLANCE_PORT:-39292}
# Below the fixture images' size (about 0.75 MiB), so any upload there meets the cap.
CLOUD_SMALL_SIZE_CAP=${CLOUD_SMALL_SIZE_CAP:-262144}
# Two clouds whose Keystone issues tokens that live CLOUD_SHORT_TOKEN_SECONDS, for the tests
# of runs that outlast a token (a publish, and a promotion between the two).
CLOUD_SHORT_KEYSTONE_PORT=${CLOUD_SHORT_KEYSTONE_PORT:-45000}
CLOUD_SHORT_GLANCE_PORT=${CLOUD_SHORT_GLANCE_PORT:-49292}
CLOUD_SHORT_B_KEYSTONE_PORT=${CLOUD_SHORT_B_KEYSTONE_PORT:-55000}
CLOUD_SHORT_B_GLANCE_PORT=${CLOUD_SHORT_B_GLANCE_PORT:-59292}
CLOUD_SHORT_TOKEN_SECONDS=${CLOUD_SHORT_TOKEN_SECONDS:-30}
# gunicorn `workers` (processes) of every Glance up.sh starts; each runs 8 threads. A positive
# integer, checked by up.sh. 1 unless asked: see README.md ("Glance workers").
CLOUD_GLANCE_WORKERS=${CLOUD_GLANCE_WORKERS:-1}
# The demo needs only the first two (CLOUD_NAMES="local local-prod").
CLOUD_NAMES=${CLOUD_NAMES:-local local-prod local-small local-short local-short-b}
SERVERS="keystone glance-api"

LOCK_FILE=$CLOUD_SCRIPTS/requirements.lock

# The venv lives outside the checkout so fresh clones and `PURGE=1` keep it. It is keyed by
# the lock file and the interpreter's version: a changed lock (or a new python3) gets a new
# venv instead of silently running with stale packages.
venv_key() {
  { cat "$LOCK_FILE"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16
}
VENV_ROOT=${CLOUD_VENV_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/glance-venv}
VENV_DIR=${CLOUD_VENV:-$VENV_ROOT/$(venv_key)}
VENV_STAMP=$VENV_DIR/.complete

# scheme_of CLOUD -> "http" or "https" (local-small: TLS, for the tests of TLS settings)
scheme_of() {
  case $1 in
    local-small) echo https ;;
    *) echo http ;;
  esac
}
TLS_DIR=$CLOUD_DIR/tls

ports_of() { # ports_of CLOUD -> "KEYSTONE_PORT GLANCE_PORT"
  case $1 in
    local) echo "$CLOUD_LOCAL_KEYSTONE_PORT $CLOUD_LOCAL_GLANCE_PORT" ;;
    local-prod) echo "$CLOUD_PROD_KEYSTONE_PORT $CLOUD_PROD_GLANCE_PORT" ;;
    local-small) echo "$CLOUD_SMALL_KEYSTONE_PORT $CLOUD_SMALL_GLANCE_PORT" ;;
    local-short) echo "$CLOUD_SHORT_KEYSTONE_PORT $CLOUD_SHORT_GLANCE_PORT" ;;
    local-short-b) echo "$CLOUD_SHORT_B_KEYSTONE_PORT $CLOUD_SHORT_B_GLANCE_PORT" ;;
    *) return 1 ;;
  esac
}

# is_ours PID CLOUD SERVER: PID is alive and is a gunicorn that up.sh started with this
# CLOUD_DIR's config. A pid file can outlive its process and the pid be reused by anything,
# so the environment is checked before any signal is sent.
is_ours() {
  [ -r "/proc/$1/environ" ] &&
    tr '\0' '\n' 2>/dev/null < "/proc/$1/environ" |
      grep -qxF "GUNICORN_CMD_ARGS=-c $CLOUD_DIR/$2/etc/$3.gunicorn.py"
}
# ours CLOUD SERVER -> prints the master pid from the server's pid file if it is ours
ours() {
  local f=$CLOUD_DIR/$1/run/$2.pid pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  is_ours "$pid" "$1" "$2" || return 1
  echo "$pid"
}
