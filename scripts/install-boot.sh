#!/usr/bin/env bash
# Install what the boot check (src/boot, `pipeline boot-check`) and the bootable fixture images
# need: QEMU's x86 system emulator, OVMF (UEFI) and SeaBIOS firmware, xorriso (the config drive
# each boot gets), and the fixture builders' tools (GRUB's EFI and i386-pc modules, nasm,
# mtools, cpio for the guests' initramfs). Idempotent; needs root and apt only when something is
# missing. The guests' kernel comes from scripts/install-guest.sh.
#
# Why bookworm-backports for QEMU: qemu-img may be the backports build (qemu-utils 1:10.x~bpo12),
# and bookworm's own qemu-system-x86 (1:7.2) Breaks it, so a plain `apt-get install
# qemu-system-x86` would REMOVE qemu-utils and qemu-img with it. The matching backports build
# installs beside it. Backports is added, when no configured source offers it already, through a
# file this project owns (hephaestus-backports.sources); backports is NotAutomatic, so that file
# changes nothing unless a package is asked for from it by name, as below.
# Every apt transaction is simulated first and refused if it would remove anything.
set -euo pipefail
APT_WHO=install-boot
# shellcheck source=scripts/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# shellcheck source=/dev/null
. /etc/os-release
codename=${VERSION_CODENAME:?install-boot: /etc/os-release has no VERSION_CODENAME}
bpo=$codename-backports
sources_file=/etc/apt/sources.list.d/hephaestus-backports.sources

# From backports, as one consistent set (same upstream version as each other).
qemu_pkgs=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
# From the release itself.
other_pkgs=(ovmf grub-efi-amd64-bin grub-pc-bin grub-common nasm mtools xorriso cpio)

installed() { # $1 = package; true when dpkg has it fully installed
  [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}
version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || true; }

# The emulator must come from the same build as qemu-img (qemu-utils), whichever that is.
want_qemu=()
for p in "${qemu_pkgs[@]}"; do installed "$p" || want_qemu+=("$p"); done
if installed qemu-system-x86 && installed qemu-utils \
   && [ "$(version qemu-system-x86)" != "$(version qemu-utils)" ]; then
  echo "install-boot: qemu-system-x86 $(version qemu-system-x86) differs from qemu-utils" \
       "$(version qemu-utils); reinstalling from $bpo" >&2
  want_qemu=("${qemu_pkgs[@]}")
fi
want_other=()
for p in "${other_pkgs[@]}"; do installed "$p" || want_other+=("$p"); done

if [ "${#want_qemu[@]}" -eq 0 ] && [ "${#want_other[@]}" -eq 0 ]; then
  echo "install-boot: already installed: qemu-system-x86 $(version qemu-system-x86)," \
       "ovmf $(version ovmf), seabios $(version seabios)" >&2
  exit 0
fi

apt_need_root "${want_qemu[@]}" "${want_other[@]}"
start=$(date +%s)
if [ "${#want_qemu[@]}" -gt 0 ] && ! apt-cache policy | grep -q " $bpo/"; then
  echo "install-boot: adding $bpo through $sources_file" >&2
  cat > "$sources_file" <<SOURCES
# Added by hephaestus scripts/install-boot.sh: QEMU matching a backports qemu-utils.
Types: deb
URIs: http://deb.debian.org/debian
Suites: $bpo
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
targets=("${want_other[@]}")
for p in "${want_qemu[@]}"; do targets+=("$p/$bpo"); done
echo "install-boot: installing ${targets[*]}" >&2
apt_install "${targets[@]}"

for tool in qemu-system-x86_64 qemu-img grub-mkimage nasm mformat mcopy xorriso cpio; do
  command -v "$tool" >/dev/null || { echo "install-boot: $tool missing after install" >&2; exit 1; }
done
ls /usr/share/qemu/firmware/*.json >/dev/null 2>&1 \
  || { echo "install-boot: no firmware descriptors in /usr/share/qemu/firmware" >&2; exit 1; }
echo "install-boot: installed in $(( $(date +%s) - start )) s: qemu-system-x86" \
     "$(version qemu-system-x86), ovmf $(version ovmf), seabios $(version seabios)" >&2
