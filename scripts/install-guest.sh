#!/usr/bin/env bash
# Fetch what the fixture flake's Linux guests are made of: Debian's cloud kernel and a static
# busybox, downloaded with `apt-get download` (nothing is installed on the host) and unpacked into
# HEPHAESTUS_GUEST_DIR (default /var/cache/hephaestus/guest), outside the checkout.
# Idempotent: a cache holding the kernel apt offers today is left alone. Needs root and apt only
# when the cache must be (re)made.
#
# Why a fixed system directory and not ~/.cache: the flake is evaluated purely (no environment
# variables) and its builders may run as nixbld users with HOME=/homeless-shelter, so the path
# must be a constant every builder can read (fixtures/flake/flake.nix names it).
#
# Result:
#   vmlinuz            the kernel (linux-image-<abi>-cloud-amd64)
#   modules/*.ko       the modules the guest's init loads to read a config drive: virtio PCI and
#                      block (the drive is a virtio disk) and isofs, which needs cdrom.ko
#   busybox            busybox-static's binary
#   VERSION            the two package versions, recorded in every fixture image
set -euo pipefail
APT_WHO=install-guest
# shellcheck source=scripts/apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
dir=${HEPHAESTUS_GUEST_DIR:-/var/cache/hephaestus/guest}
# The cloud kernel is built with these as modules (the generic initramfs tools are not used, so
# the guest loads them itself).
modules=(virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
  cdrom isofs)

# linux-image-cloud-amd64 is a metapackage: its dependency names the current ABI's package.
kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
  | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
if [ -z "$kernel_pkg" ]; then
  apt_need_root "apt's package lists (no linux-image-cloud-amd64 known)"
  apt-get update -qq
  kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 \
    | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
fi
[ -n "$kernel_pkg" ] || { echo "install-guest: apt knows no linux-image-cloud-amd64" >&2; exit 1; }
kernel_ver=$(apt-cache policy "$kernel_pkg" | sed -n 's/^ *Candidate: //p')
busybox_ver=$(apt-cache policy busybox-static | sed -n 's/^ *Candidate: //p')
want="$kernel_pkg $kernel_ver
busybox-static $busybox_ver"

if [ -f "$dir/VERSION" ] && [ "$(cat "$dir/VERSION")" = "$want" ] && [ -f "$dir/vmlinuz" ] \
   && [ -x "$dir/busybox" ]; then
  echo "install-guest: already in $dir: $(tr '\n' ' ' < "$dir/VERSION")" >&2
  exit 0
fi

apt_need_root "$(printf '%s' "$want" | tr '\n' ' ') in $dir"
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "install-guest: downloading $kernel_pkg $kernel_ver and busybox-static $busybox_ver" >&2
# _apt drops privileges for downloads and must be able to write here.
chmod 0777 "$work"
(cd "$work" && apt-get download -qq "$kernel_pkg" busybox-static)
dpkg-deb -x "$work/${kernel_pkg}_"*.deb "$work/kernel"
dpkg-deb -x "$work/busybox-static_"*.deb "$work/busybox"

new=$dir.new
rm -rf "$new"
mkdir -p "$new/modules"
cp "$work"/kernel/boot/vmlinuz-* "$new/vmlinuz"
moddir=$(echo "$work"/kernel/lib/modules/*/kernel)
for m in "${modules[@]}"; do
  ko=$(find "$moddir" -name "$m.ko" -print -quit)
  # The .deb has no modules.dep; a module built into this kernel needs no file.
  [ -n "$ko" ] && cp "$ko" "$new/modules/"
done
[ -f "$new/modules/isofs.ko" ] || grep -q '^CONFIG_ISO9660_FS=y' "$work"/kernel/boot/config-* \
  || { echo "install-guest: $kernel_pkg has no isofs" >&2; exit 1; }
cp "$work/busybox/bin/busybox" "$new/busybox"
printf '%s\n' "$want" > "$new/VERSION"
chmod -R a+rX "$new"
rm -rf "$dir"
mv "$new" "$dir"
echo "install-guest: $dir ready in $(( $(date +%s) - start )) s: $(du -sh "$dir" | cut -f1)," \
  "$(tr '\n' ' ' < "$dir/VERSION")" >&2
