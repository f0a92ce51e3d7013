# Options shared by every Hephaestus profile.
#
# `hephaestus.boot` is the single place where a profile states its firmware. Everything that
# depends on it reads it from here: the bootloader and file systems (./boot.nix), the partition
# table of the image (./image.nix) and the `boot_mode` written into image-info.json. The
# pipeline tags the Glance image from profiles/<name>.yaml, and a test
# (tests/it/prod_flake.rs) checks that each profile module says the same thing as its YAML,
# so the image and its firmware tags cannot drift apart.
{ lib, ... }:
{
  options.hephaestus = {
    boot = lib.mkOption {
      # No default on purpose: a profile that forgets to choose must fail to evaluate rather
      # than silently inherit nixpkgs' legacy-BIOS default for OpenStack images.
      type = lib.types.enum [ "uefi" "bios" ];
      description = ''
        Firmware the image boots under, and therefore how Glance tags it:
        `uefi` (GPT + EFI System Partition, `hw_firmware_type=uefi`, `hw_machine_type=q35`) or
        `bios` (MBR, `hw_firmware_type=bios`). Legacy BIOS is allowed only for the profiles
        listed in profiles/policy.yaml.
      '';
    };

    profile = lib.mkOption {
      type = lib.types.str;
      description = ''
        Name of the profile (profiles/<name>.yaml). Used for the default host name and the
        image file name.
      '';
    };
  };
}
