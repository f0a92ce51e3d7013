#!/usr/bin/env bash
# Install what `make bench` measures with and against, when missing: GNU time (/usr/bin/time,
# for CPU time and peak RSS), openssl (`openssl dgst -sha512`), qemu-img and sfdisk (the test
# image), curl. Idempotent: a package is installed only when its command is missing, so tools
# installed some other way are left alone. Needs root and apt only when something is missing.
set -euo pipefail
APT_WHO=bench/install
# shellcheck source=scripts/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/../apt.sh"

wanted=()
for pair in time:/usr/bin/time openssl:openssl qemu-utils:qemu-img fdisk:sfdisk coreutils:sha512sum curl:curl; do
  pkg=${pair%%:*} cmd=${pair#*:}
  if [ "${cmd#/}" != "$cmd" ]; then
    [ -x "$cmd" ] && continue
  elif command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ]; then
    continue
  fi
  wanted+=("$pkg")
done
[ "${#wanted[@]}" -eq 0 ] && exit 0

apt_need_root "${wanted[@]}"
echo "bench/install: installing ${wanted[*]}" >&2
apt_install "${wanted[@]}"
