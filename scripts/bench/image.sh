#!/usr/bin/env bash
# Print the path of the benchmark image, creating it once: a 1 GiB qcow2 whose guest disk is
# random bytes (incompressible, so the qcow2 file really is ~1 GiB and no tool gets a cheap
# run of zeros) under a GPT with an EFI System Partition, so `pipeline verify --profile lucy`
# (a uefi profile) accepts it. Cached under ${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/bench/;
# written to a temporary name and renamed, so an interrupted run never leaves a half image.
set -euo pipefail

dir=${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/bench
image=$dir/verify-1g.qcow2
if [ -s "$image" ]; then
  printf '%s\n' "$image"
  exit 0
fi

sfdisk=$(command -v sfdisk || echo /usr/sbin/sfdisk)
mkdir -p "$dir"
raw=$(mktemp "$dir/raw.XXXXXX")
tmp=$(mktemp "$dir/qcow2.XXXXXX")
trap 'rm -f "$raw" "$tmp"' EXIT

echo "bench: creating the 1 GiB test image (random bytes, GPT + ESP) in $dir" >&2
head -c 1073741824 /dev/urandom >"$raw"
# The partition table overwrites the first and last 34 sectors of the random bytes.
"$sfdisk" --quiet --label gpt "$raw" <<'TABLE'
size=128MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
TABLE
qemu-img convert -f raw -O qcow2 "$raw" "$tmp"
rm -f "$raw"
mv "$tmp" "$image"
trap - EXIT
printf '%s\n' "$image"
