#!/usr/bin/env bash
# Install what the Nix side of the tests needs, offline-ready, without touching /etc/nix/nix.conf:
#   nix-bin (Debian bookworm: Nix 2.8) for `nix build`, plus the host tools the fixture flake's
#   builders call by absolute path: qemu-img, sfdisk (fdisk), mtools, and git.
#   openssh-server: the remote-builder test (tests/it/builders.rs) starts its own sshd on a
#   loopback port, with its own keys and sshd_config, as a Nix build machine. Its binary is all
#   that is used; the Debian package's own ssh service is not touched by the tests.
# Idempotent; needs root and apt only when something is missing. The offline settings come from
# scripts/nix-env.sh (NIX_CONFIG).
#
# qemu-utils may come from bookworm-backports (a newer qemu-img than bookworm's); it is only
# installed when missing, and every apt transaction is simulated first and refused if it would
# remove or replace a package, so a working qemu-img is never swapped out behind our back.
set -euo pipefail
APT_WHO=install-nix
# shellcheck source=scripts/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# package:command pairs; a package is wanted only when its command is missing, so a tool installed
# some other way (a newer git, a backports qemu-img) is left alone.
wanted=()
for pair in nix-bin:nix qemu-utils:qemu-img fdisk:sfdisk mtools:mformat git:git openssh-server:sshd; do
  pkg=${pair%%:*} cmd=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/sbin/$cmd" ]; then
    wanted+=("$pkg")
  fi
done

if [ "${#wanted[@]}" -gt 0 ]; then
  apt_need_root "${wanted[@]}"
  echo "install-nix: installing ${wanted[*]}" >&2
  # nix-setup-systemd (a Recommends of nix-bin) only adds a systemd unit, useless without systemd.
  apt_install --keep qemu-utils "${wanted[@]}"
fi

# The fixture builders hard-code these paths (pure evaluation cannot look them up).
for tool in /usr/bin/qemu-img /usr/sbin/sfdisk /usr/bin/mformat /usr/bin/mcopy /bin/sh; do
  [ -x "$tool" ] || { echo "install-nix: $tool missing after install" >&2; exit 1; }
done
# The remote-builder test runs sshd by this path.
[ -x /usr/sbin/sshd ] || { echo "install-nix: /usr/sbin/sshd missing after install" >&2; exit 1; }
# Debian's nix-bin postinst creates the nixbld group and users; builds run as nixbld1.
getent group nixbld >/dev/null || echo "install-nix: note: no nixbld group, builds will run as root" >&2
nix --version
