#!/usr/bin/env bash
# down.sh - stop the Keystone/Glance servers that up.sh started under CLOUD_DIR.
# Only pids from CLOUD_DIR/<cloud>/run/*.pid are signalled, and only after checking that the
# pid is a gunicorn started with this CLOUD_DIR's config (never by process name).
#   scripts/cloud/down.sh            # stop, keep the state (up.sh restarts in seconds)
#   PURGE=1 scripts/cloud/down.sh    # stop and delete the clouds' state (the venv is kept)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ -d "$CLOUD_DIR" ] || { echo "down.sh: no $CLOUD_DIR, nothing to do"; exit 0; }
CLOUD_DIR=$(cd "$CLOUD_DIR" && pwd)

children() { grep -l "^PPid:[[:space:]]*$1\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3 || true; }

# Signal every master first, then wait: the four servers stop in parallel.
stopping=()   # "cloud server pid worker-pids..."
for c in $CLOUD_NAMES; do
  for s in $SERVERS; do
    if pid=$(ours "$c" "$s"); then
      kids=$(children "$pid" | tr '\n' ' ')
      kill -TERM "$pid" 2>/dev/null || true   # gunicorn: graceful stop, workers get graceful_timeout = 5 s
      stopping+=("$c $s $pid $kids")
    else
      rm -f "$CLOUD_DIR/$c/run/$s.pid"        # stale: its process is gone or is not ours
    fi
  done
done
for entry in "${stopping[@]}"; do
  read -r c s pid kids <<< "$entry"
  for ((i = 0; i < 100; i++)); do
    is_ours "$pid" "$c" "$s" || break
    sleep 0.1
  done
  if is_ours "$pid" "$c" "$s"; then
    echo "down.sh: $c $s (pid $pid) ignored SIGTERM for 10 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for k in $kids; do   # workers of that master, recorded before the stop
    if is_ours "$k" "$c" "$s"; then kill -KILL "$k" 2>/dev/null || true; fi
  done
  rm -f "$CLOUD_DIR/$c/run/$s.pid"
  echo "down.sh: stopped $c $s (pid $pid)"
done

if [ "${PURGE:-0}" = 1 ]; then
  for c in $CLOUD_NAMES; do rm -rf "${CLOUD_DIR:?}/$c"; done
  rm -f "$CLOUD_DIR/clouds.yaml" "$CLOUD_DIR/env.sh"
  rmdir "$CLOUD_DIR" 2>/dev/null || true
  echo "down.sh: purged the clouds' state in $CLOUD_DIR (venv kept: $VENV_DIR)"
fi
