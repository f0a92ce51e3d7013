#!/usr/bin/env bash
# up.sh - start three real OpenStack clouds (Keystone 29 + Glance 32 from PyPI) on 127.0.0.1
# for the integration tests and local runs: `local` (staging), `local-prod` (production) and
# `local-small` (HTTPS, and a Glance with a small image_size_cap, for the tests of TLS and of
# that limit), `local-short` and `local-short-b` (tokens that live seconds, for the tests of
# runs that outlast a token).
#
#   scripts/cloud/up.sh                  # state under $CLOUD_DIR (default <repo>/.run/cloud)
#   . .run/cloud/env.sh                  # OS_CLIENT_CONFIG_FILE=.../clouds.yaml
#   scripts/cloud/down.sh                # stop; PURGE=1 also wipes the state (not the venv)
#
# Idempotent: builds the venv if missing (install.sh), configures and bootstraps each cloud
# once, starts only the servers that are not running, then checks each cloud end to end
# (a member token is issued and GET /v2/images answers). When everything already runs it
# only says so. Settings: see common.sh (ports, CLOUD_DIR, CLOUD_VENV, CLOUD_GLANCE_WORKERS)
# and CLOUD_PARALLEL (1 = bring both clouds up at once, the default; 0 = one after the other).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! [[ $CLOUD_GLANCE_WORKERS =~ ^[1-9][0-9]*$ ]]; then
  echo "up.sh: ERROR: CLOUD_GLANCE_WORKERS must be a positive integer (the number of Glance worker processes), got '$CLOUD_GLANCE_WORKERS'" >&2
  exit 1
fi

mkdir -p "$CLOUD_DIR"
CLOUD_DIR=$(cd "$CLOUD_DIR" && pwd)
T0=$EPOCHREALTIME
say() { awk -v a="$T0" -v b="$EPOCHREALTIME" -v m="$*" 'BEGIN {printf "[cloud %5.1fs] %s\n", b - a, m}'; }
die() {
  echo "up.sh: ERROR: $*" >&2
  echo "up.sh: to start over: PURGE=1 CLOUD_DIR=$CLOUD_DIR $CLOUD_SCRIPTS/down.sh" >&2
  exit 1
}
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Fixed, per-cloud credentials: this is a throwaway test rig on loopback.
admin_password() { echo "admin-$1-secret"; }
member_password() { echo "publisher-$1-secret"; }
MEMBER_USER=publisher
MEMBER_PROJECT=hephaestus

# glance_workers CLOUD -> the `workers` of that cloud's Glance as last configured (or "?")
glance_workers() {
  sed -n 's/^workers = \([0-9]*\)$/\1/p' "$CLOUD_DIR/$1/etc/glance-api.gunicorn.py" 2>/dev/null | grep . || echo '?'
}

summary() {
  local c ks gl s
  for c in $CLOUD_NAMES; do
    read -r ks gl < <(ports_of "$c")
    s=$(scheme_of "$c")
    echo "  $c: keystone $s://$HOST:$ks/v3 (pid $(ours "$c" keystone || echo -)), glance $s://$HOST:$gl (pid $(ours "$c" glance-api || echo -), $(glance_workers "$c") worker(s))"
  done
  echo "  clouds: $CLOUD_NAMES (user $MEMBER_USER, member of $MEMBER_PROJECT), each also as <cloud>-admin"
  echo "  use:    . $CLOUD_DIR/env.sh && \"\$CLOUD_VENV/bin/openstack\" --os-cloud local image list"
  echo "  logs:   $CLOUD_DIR/<cloud>/log    stop: $CLOUD_SCRIPTS/down.sh"
}

all_running() {
  local c s
  for c in $CLOUD_NAMES; do for s in $SERVERS; do ours "$c" "$s" >/dev/null || return 1; done; done
}
if all_running && [ -s "$CLOUD_DIR/clouds.yaml" ] && [ -s "$CLOUD_DIR/env.sh" ]; then
  say "already running (run down.sh first to change settings)"
  for c in $CLOUD_NAMES; do
    if [ "$(glance_workers "$c")" != "$CLOUD_GLANCE_WORKERS" ]; then
      echo "up.sh: note: $c's running Glance has $(glance_workers "$c") worker(s), not CLOUD_GLANCE_WORKERS=$CLOUD_GLANCE_WORKERS; run down.sh first to change it" >&2
    fi
  done
  summary
  exit 0
fi

VENV=$("$CLOUD_SCRIPTS/install.sh") || die "could not install the venv"
B=$VENV/bin
GLANCE_PASTE=$VENV/etc/glance/glance-api-paste.ini
[ -r "$GLANCE_PASTE" ] || die "$GLANCE_PASTE missing: the venv is incomplete (rm -rf $VENV and retry)"

# A throwaway CA and one server certificate for 127.0.0.1, made once per CLOUD_DIR. The
# certificate names only the IP address, so https://localhost:... is a hostname mismatch
# (the tests rely on that).
make_tls() {
  [ -s "$TLS_DIR/server.pem" ] && return 0
  mkdir -p "$TLS_DIR"
  local tmp
  tmp=$(mktemp -d "$TLS_DIR/.new.XXXXXX")
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=hephaestus test CA" \
      -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$tmp/server.key" -out "$tmp/server.csr"
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
      > "$tmp/server.ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
      -CAcreateserial -days 30 -extfile "$tmp/server.ext" -out "$tmp/server.pem"
  } > "$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; die "openssl could not make the test CA"; }
  chmod 600 "$tmp"/*.key
  mv "$tmp"/* "$TLS_DIR/" && rmdir "$tmp"
}
make_tls

wal() { "$B/python" -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$1"; }

# Fernet keys as `keystone-manage fernet_setup`/`credential_setup` write them (key 0 staged,
# key 1 primary, each 32 random bytes urlsafe-base64, dir 0700, files 0600), written directly
# because each keystone-manage start-up costs ~3 s of CPU.
fernet_keys() {
  "$B/python" - "$1" <<'PY'
import base64, os, sys
d = sys.argv[1]
os.makedirs(d, mode=0o700, exist_ok=True)
for n in ("0", "1"):
    p = os.path.join(d, n)
    if not os.path.exists(p):
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, base64.urlsafe_b64encode(os.urandom(32)))
        os.close(fd)
PY
}

# cloud_up CLOUD: bring one cloud up; runs in its own subshell so both clouds can start at once.
cloud_up() (
  c=$1
  read -r KS_PORT GL_PORT < <(ports_of "$c")
  D=$CLOUD_DIR/$c
  ETC=$D/etc DATA=$D/data LOG=$D/log RUN=$D/run
  SCHEME=$(scheme_of "$c")
  KS_URL=$SCHEME://$HOST:$KS_PORT/v3 GL_URL=$SCHEME://$HOST:$GL_PORT
  # urllib (keystone_setup.py), keystonemiddleware and curl trust the test CA for this cloud
  tls_conf="" authtoken_ca="" curl_ca=()
  if [ "$SCHEME" = https ]; then
    tls_conf="certfile = \"$TLS_DIR/server.pem\"
keyfile = \"$TLS_DIR/server.key\""
    authtoken_ca="cafile = $TLS_DIR/ca.pem"
    curl_ca=(--cacert "$TLS_DIR/ca.pem")
    export SSL_CERT_FILE=$TLS_DIR/ca.pem
  fi
  ADMIN_PASSWORD=$(admin_password "$c") GLANCE_PASSWORD=glance-$c-secret
  cdie() { die "$c: $*"; }
  csay() { say "$c: $*"; }

  started=()
  # shellcheck disable=SC2317  # invoked by the EXIT trap
  on_exit() { # on failure, stop whatever this run started (never what was already running)
    local rc=$? n pid
    if [ "$rc" != 0 ]; then
      for n in "${started[@]}"; do
        if pid=$(ours "$c" "$n"); then kill "$pid" 2>/dev/null || true; fi
      done
    fi
  }
  trap on_exit EXIT

  for s in keystone:$KS_PORT glance-api:$GL_PORT; do
    if ! ours "$c" "${s%%:*}" >/dev/null && port_busy "${s##*:}"; then
      cdie "port $HOST:${s##*:} for ${s%%:*} is in use by something else (set CLOUD_*_PORT)"
    fi
  done
  mkdir -p "$ETC/keystone" "$ETC/glance" "$DATA/images" "$DATA/staging" "$DATA/tasks" \
           "$DATA/locks" "$LOG" "$RUN"

  # ---- configuration (rewritten on every start; cheap) ----
  gunicorn_conf() { # NAME APP PORT WORKERS THREADS ENVVAR=DIR [PYTHONPATH]
    cat > "$ETC/$1.gunicorn.py" <<CONF
# gunicorn must get NO command-line arguments: keystone parses sys.argv itself,
# so up.sh starts plain gunicorn with GUNICORN_CMD_ARGS="-c <this file>".
wsgi_app = "$2"
bind = "$HOST:$3"
workers = $4
worker_class = "gthread"
threads = $5
timeout = 600
graceful_timeout = 5
chdir = "$D"
pidfile = "$RUN/$1.pid"
errorlog = "$LOG/$1.gunicorn.log"
accesslog = "$LOG/$1.access.log"
raw_env = ["$6"]
# gunicorn 25 otherwise shares \$HOME/.gunicorn/gunicorn.ctl between all instances
control_socket_disable = True
$tls_conf
CONF
    if [ -n "${7:-}" ]; then echo "pythonpath = \"$7\"" >> "$ETC/$1.gunicorn.py"; fi
  }

  token_lifetime=""
  case $c in
    local-short*) token_lifetime="expiration = $CLOUD_SHORT_TOKEN_SECONDS" ;;
  esac
  cat > "$ETC/keystone/keystone.conf" <<CONF
[DEFAULT]
log_file = $LOG/keystone.log
[database]
# pysqlite waits this long for a lock instead of failing at once with "database is locked"
# (parallel token checks and writes happen when several tests publish at the same time).
connection = sqlite:///$DATA/keystone.sqlite?timeout=30
[token]
provider = fernet
$token_lifetime
[fernet_tokens]
key_repository = $ETC/keystone/fernet-keys
[fernet_receipts]
key_repository = $ETC/keystone/fernet-receipts
[credential]
key_repository = $ETC/keystone/credential-keys
[identity]
# bcrypt cost 4 instead of 12: every password auth is ~0.2 s faster (test rig only)
password_hash_rounds = 4
CONF
  # One thread: keystone's SQLite writes (application credentials, users made by the tests)
  # fail at once with 500 "database is locked" when another request of the same process
  # holds a read snapshot (SQLITE_BUSY_SNAPSHOT: no timeout helps), and BEGIN IMMEDIATE
  # deadlocks keystone's nested sessions. Serialised, nothing can collide; the GIL already
  # made the threads take turns, so token throughput is about the same.
  gunicorn_conf keystone keystone.wsgi.api:application "$KS_PORT" 1 1 \
    "OS_KEYSTONE_CONFIG_DIR=$ETC/keystone"

  size_cap=""
  if [ "$c" = local-small ]; then size_cap="image_size_cap = $CLOUD_SMALL_SIZE_CAP"; fi
  cat > "$ETC/glance/glance-api.conf" <<CONF
[DEFAULT]
log_file = $LOG/glance-api.log
$size_cap
enabled_backends = fs:file
enabled_import_methods = [glance-direct,web-download,copy-image]
worker_self_reference_url = $GL_URL
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $DATA/images
# with enabled_backends these default to /var/lib/glance
[os_glance_staging_store]
filesystem_store_datadir = $DATA/staging
[os_glance_tasks_store]
filesystem_store_datadir = $DATA/tasks
[database]
connection = sqlite:///$DATA/glance.sqlite
[oslo_concurrency]
lock_path = $DATA/locks
[image_format]
# format inspection: the bytes must match disk_format (a mismatch answers 415)
require_image_format_match = True
[import_filtering_opts]
# [] = any port (the default [80,443] rejects web-download from a local test server)
allowed_ports = []
[paste_deploy]
flavor = keystone
config_file = $GLANCE_PASTE
[keystone_authtoken]
www_authenticate_uri = $SCHEME://$HOST:$KS_PORT
auth_url = $SCHEME://$HOST:$KS_PORT
$authtoken_ca
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $GLANCE_PASSWORD
CONF
  cp "$CLOUD_SCRIPTS/glance_wsgi.py" "$ETC/glance/hephaestus_glance_wsgi.py"
  gunicorn_conf glance-api hephaestus_glance_wsgi:application "$GL_PORT" \
    "$CLOUD_GLANCE_WORKERS" 8 "OS_GLANCE_CONFIG_DIR=$ETC/glance" "$ETC/glance"

  spawn() { # spawn SERVER: start its gunicorn master, detached; returns once its pid file is ours
    GUNICORN_CMD_ARGS="-c $ETC/$1.gunicorn.py" setsid "$B/gunicorn" \
      >> "$LOG/$1.stdout.log" 2>&1 < /dev/null &
    started+=("$1")
    local i
    for ((i = 0; i < 200; i++)); do ours "$c" "$1" >/dev/null && return 0; sleep 0.05; done
    tail -n 40 "$LOG/$1"*.log >&2 || true
    cdie "$1 did not start (logs in $LOG)"
  }
  healthy() { # healthy SERVER URL: wait until URL answers, failing early if the server died
    local i
    for ((i = 0; i < 600; i++)); do
      curl -sf "${curl_ca[@]}" -o /dev/null --max-time 2 "$2" && return 0
      ours "$c" "$1" >/dev/null || { tail -n 40 "$LOG/$1"*.log >&2 || true; cdie "$1 died during start-up (logs in $LOG)"; }
      sleep 0.1
    done
    tail -n 40 "$LOG/$1"*.log >&2 || true
    cdie "$1 not healthy at $2 after 60 s (logs in $LOG)"
  }

  # glance's schema does not depend on keystone: migrate it while keystone bootstraps
  gsync=""
  if [ ! -e "$DATA/glance-db.done" ]; then
    ( "$B/glance-manage" --config-file "$ETC/glance/glance-api.conf" db_sync \
        > "$LOG/glance-manage.log" 2>&1 && wal "$DATA/glance.sqlite" && touch "$DATA/glance-db.done" ) &
    gsync=$!
  fi

  if [ ! -e "$DATA/keystone-db.done" ]; then
    csay "keystone: db_sync + bootstrap ..."
    km() { "$B/keystone-manage" --config-file "$ETC/keystone/keystone.conf" "$@" >> "$LOG/keystone-manage.log" 2>&1 \
             || { tail -n 30 "$LOG/keystone-manage.log" >&2; cdie "keystone-manage $1 failed"; }; }
    rm -f "$DATA/keystone.sqlite"*   # a half-migrated database from an interrupted run
    km db_sync
    # without WAL, POST /v3/services fails with 'database is locked' (outer read txn holds the lock)
    wal "$DATA/keystone.sqlite"
    fernet_keys "$ETC/keystone/fernet-keys"
    fernet_keys "$ETC/keystone/fernet-receipts"
    fernet_keys "$ETC/keystone/credential-keys"
    km bootstrap --bootstrap-password "$ADMIN_PASSWORD" \
      --bootstrap-admin-url "$KS_URL" --bootstrap-internal-url "$KS_URL" \
      --bootstrap-public-url "$KS_URL" --bootstrap-region-id "$REGION"
    touch "$DATA/keystone-db.done"
  fi
  # both servers load their apps at the same time; glance needs keystone only per request
  new_ks="" new_gl=""
  if ! ours "$c" keystone >/dev/null; then
    csay "keystone: starting on $KS_URL"
    spawn keystone; new_ks=1
  fi
  if [ -n "$gsync" ]; then
    wait "$gsync" || { tail -n 30 "$LOG/glance-manage.log" >&2; cdie "glance-manage db_sync failed"; }
  fi
  if ! ours "$c" glance-api >/dev/null; then
    csay "glance: starting on $GL_URL"
    spawn glance-api; new_gl=1
  fi
  if [ -n "$new_ks" ]; then healthy keystone "$KS_URL"; fi
  # identity objects and catalog: get-or-create, so cheap and self-repairing on every start
  # Plain-HTTP clouds list Glance's internal endpoint, and a second region's public one, as
  # http://localhost:PORT: the same server under another name, so a test can see which
  # endpoint the client chose. (localhost would not match local-small's certificate.)
  gl_other=""
  if [ "$SCHEME" = http ]; then gl_other=http://localhost:$GL_PORT; fi
  GL_INTERNAL_URL=$gl_other GL_SECOND_URL=$gl_other SECOND_REGION=$SECOND_REGION \
  KS_URL=$KS_URL GL_URL=$GL_URL REGION=$REGION ADMIN_PASSWORD=$ADMIN_PASSWORD \
    GLANCE_PASSWORD=$GLANCE_PASSWORD MEMBER_USER=$MEMBER_USER \
    MEMBER_PASSWORD=$(member_password "$c") MEMBER_PROJECT=$MEMBER_PROJECT \
    "$B/python" "$CLOUD_SCRIPTS/keystone_setup.py" setup || cdie "keystone setup failed"
  if [ -n "$new_gl" ]; then healthy glance-api "$GL_URL/healthcheck"; fi

  KS_URL=$KS_URL GL_URL=$GL_URL REGION=$REGION MEMBER_USER=$MEMBER_USER \
    MEMBER_PASSWORD=$(member_password "$c") MEMBER_PROJECT=$MEMBER_PROJECT \
    "$B/python" "$CLOUD_SCRIPTS/keystone_setup.py" check || cdie "end-to-end check failed (logs in $LOG)"
  csay "ready (keystone pid $(ours "$c" keystone), glance pid $(ours "$c" glance-api))"
)

pids=()
if [ "${CLOUD_PARALLEL:-1}" = 1 ]; then
  for c in $CLOUD_NAMES; do cloud_up "$c" & pids+=($!); done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ "$failed" = 0 ] || die "a cloud failed to start (see above)"
else
  for c in $CLOUD_NAMES; do cloud_up "$c"; done
fi

cloud_entry() { # cloud_entry NAME CLOUD USER PASSWORD PROJECT
  local ks gl s
  read -r ks gl < <(ports_of "$2")
  s=$(scheme_of "$2")
  cat <<YAML
  $1:
    auth:
      auth_url: $s://$HOST:$ks/v3
      username: $3
      password: $4
      project_name: $5
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION
    interface: public
    identity_api_version: 3
YAML
  if [ "$s" = https ]; then echo "    cacert: $TLS_DIR/ca.pem"; fi
}
{
  echo "# Written by scripts/cloud/up.sh: independent loopback clouds (local = staging,"
  echo "# local-prod = production, local-small = a small image_size_cap, local-short and"
  echo "# local-short-b = $CLOUD_SHORT_TOKEN_SECONDS-second tokens, for tests); the"
  echo "# *-admin entries are for test set-up only. local-small is HTTPS, signed by the"
  echo "# throwaway CA in $TLS_DIR."

  echo "clouds:"
  for c in $CLOUD_NAMES; do
    cloud_entry "$c" "$c" "$MEMBER_USER" "$(member_password "$c")" "$MEMBER_PROJECT"
    cloud_entry "$c-admin" "$c" admin "$(admin_password "$c")" admin
  done
} > "$CLOUD_DIR/clouds.yaml.tmp"
mv "$CLOUD_DIR/clouds.yaml.tmp" "$CLOUD_DIR/clouds.yaml"
cat > "$CLOUD_DIR/env.sh" <<ENV
# Source me: makes clouds.yaml of the local clouds the one OpenStack clients read.
export OS_CLIENT_CONFIG_FILE="$CLOUD_DIR/clouds.yaml"
# the venv holding keystone, glance and the openstack client: "\$CLOUD_VENV/bin/openstack"
export CLOUD_VENV="$VENV"
ENV
say "ready"
summary
