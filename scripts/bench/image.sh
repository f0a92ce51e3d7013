#!/usr/bin/env bash
# Print the path of a benchmark image, creating it once: a qcow2 whose guest disk is random
# bytes (incompressible, so the qcow2 file really is as big as the disk and no tool gets a
# cheap run of zeros) under a partition table that `pipeline verify` accepts.
#
#   image.sh [--bios] [SIZE]
#
# SIZE is in GiB; `NNNm` is NNN MiB, for quick smoke tests only. Without SIZE: BENCH_MIB=NNN
# (MiB, smoke tests), else BENCH_GIB, else 1. The images are cached separately under
# ${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/bench/ as verify-1g.qcow2, verify-4g.qcow2,
# verify-64m.qcow2, ...; the BIOS variant as verify-bios-1g.qcow2, ...
#
# Layout: a GPT with an EFI System Partition (128 MiB; a quarter of the disk below 512 MiB) and
# a Linux root, so a uefi profile (lucy) verifies; with --bios, a GPT with a 1 MiB BIOS boot
# partition and a Linux root, so a bios profile (sunraku) verifies. Written to a temporary
# name and renamed, so an interrupted run never leaves a half image.
set -euo pipefail

bios=0
if [ "${1:-}" = --bios ]; then
  bios=1
  shift
fi
if [ -n "${1:-}" ]; then
  size=$1
elif [ -n "${BENCH_MIB:-}" ]; then
  size=${BENCH_MIB}m
else
  size=${BENCH_GIB:-1}
fi
case $size in
  *[mM]) mib=${size%[mM]} unit=m ;;
  *[gG]) mib=${size%[gG]} unit=g ;;
  *) mib=$size unit=g ;;
esac
if ! [[ $mib =~ ^[1-9][0-9]*$ ]]; then
  echo "bench/image.sh: the size must be a positive whole number of GiB (or NNNm for MiB), got '$size'" >&2
  exit 1
fi
label=$mib$unit
if [ "$unit" = g ]; then mib=$((mib * 1024)); fi
if [ "$mib" -lt 8 ]; then
  echo "bench/image.sh: $label is too small for a partitioned disk (8 MiB at least)" >&2
  exit 1
fi

dir=${XDG_CACHE_HOME:-$HOME/.cache}/hephaestus/bench
if [ "$bios" = 1 ]; then
  image=$dir/verify-bios-$label.qcow2
else
  # verify-1g.qcow2 keeps the name it always had, so existing caches stay valid.
  image=$dir/verify-$label.qcow2
fi
if [ -s "$image" ]; then
  printf '%s\n' "$image"
  exit 0
fi

sfdisk=$(command -v sfdisk || echo /usr/sbin/sfdisk)
mkdir -p "$dir"
raw=$(mktemp "$dir/raw.XXXXXX")
tmp=$(mktemp "$dir/qcow2.XXXXXX")
trap 'rm -f "$raw" "$tmp"' EXIT

if [ "$bios" = 1 ]; then
  what="GPT + BIOS boot partition"
  # 21686148-...: BIOS boot partition (GRUB's core.img lives there on a GPT disk).
  table='size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name="bios"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"'
else
  what="GPT + ESP"
  esp=128
  if [ "$mib" -lt 512 ]; then esp=$((mib / 4)); fi
  table="size=${esp}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"ESP\"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\""
fi
echo "bench: creating the $label test image (random bytes, $what) in $dir" >&2
head -c $((mib * 1048576)) /dev/urandom >"$raw"
# The partition table overwrites the first and last 34 sectors of the random bytes.
"$sfdisk" --quiet --label gpt "$raw" <<<"$table"
qemu-img convert -f raw -O qcow2 "$raw" "$tmp"
rm -f "$raw"
mv "$tmp" "$image"
trap - EXIT
printf '%s\n' "$image"
