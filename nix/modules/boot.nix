# Bootloader and file systems, chosen by `hephaestus.boot`.
#
# GRUB for both firmwares rather than systemd-boot: sunraku needs GRUB anyway (systemd-boot has
# no legacy-BIOS mode), so one bootloader, one serial-console setup and one failure surface
# cover all five images. On UEFI, `efiInstallAsRemovable` writes the fallback loader
# \EFI\BOOT\BOOTX64.EFI and never touches NVRAM: a fresh Nova instance starts with empty OVMF
# variables and boots only that path (measured in the boot lab).
#
# nixpkgs' own OpenStack image boots legacy BIOS on x86_64 unless told otherwise; this module
# is deliberately not built on it, so the firmware is exactly what the profile declares.
{ config, lib, ... }:
let
  uefi = config.hephaestus.boot == "uefi";
in
{
  boot.loader.grub = {
    enable = true;
    # "nodev": on UEFI GRUB is installed into the ESP only, never into a disk's boot sector.
    # /dev/vda: the first virtio disk under Nova, where make-disk-image also installs it.
    device = if uefi then "nodev" else "/dev/vda";
    efiSupport = uefi;
    efiInstallAsRemovable = uefi;
    # The serial line is what the boot-check stage and `openstack console log show` read.
    extraConfig = ''
      serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1
      terminal_input console serial
      terminal_output console serial
    '';
  };
  # Required off when efiInstallAsRemovable is on (the NixOS GRUB module asserts it), and
  # pointless anyway: the variables would not survive into the instance.
  boot.loader.efi.canTouchEfiVariables = false;
  boot.loader.timeout = lib.mkDefault 1;

  # Labels are the ones make-disk-image writes: "nixos" for the root file system, "ESP" for
  # the EFI System Partition of the "efi" partition table.
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    # Grow the file system to the partition, which boot.growPartition first grows to the
    # flavor's disk: the image is built small and Nova hands out min_disk or more.
    autoResize = true;
  };
  fileSystems."/boot" = lib.mkIf uefi {
    device = "/dev/disk/by-label/ESP";
    fsType = "vfat";
    options = [ "fmask=0077" "dmask=0077" ];
  };
  boot.growPartition = true;
}
