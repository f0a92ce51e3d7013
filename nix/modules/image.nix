# The qcow2 image of a profile: system.build.hephaestusImage, exposed by the flake as
# images.<profile>.
#
# Built with nixpkgs' nixos/lib/make-disk-image.nix rather than the newer image modules
# (system.build.images / image.modules): its arguments (partitionTableType, format, postVM)
# have been stable across releases, so the partition table follows `hephaestus.boot` through
# one argument, while the image modules' OpenStack variant pins its own layout (legacy BIOS on
# x86_64) and their option names were still moving in the 25.x releases.
#
# The output holds the image and nix-support/image-info.json, the same interface as the test
# fixture flake (fixtures/flake): the pipeline's build stage reads `file` from it.
{ config, lib, pkgs, modulesPath, ... }:
let
  uefi = config.hephaestus.boot == "uefi";
  system = pkgs.stdenv.hostPlatform.system;

  # Everything but `file`, which is only known inside the builder ($out).
  info = {
    format = "qcow2";
    boot_mode = if uefi then "uefi" else "legacy-bios";
    label = config.system.nixos.label;
    inherit system;
  };
in
{
  system.build.hephaestusImage = import (modulesPath + "/../lib/make-disk-image.nix") {
    inherit config lib pkgs;
    name = "hephaestus-${config.hephaestus.profile}-image";
    format = "qcow2";
    # "efi": GPT, FAT32 ESP (label ESP), ext4 root (label nixos).
    # "legacy": MBR with one ext4 partition (label nixos); GRUB in the MBR gap.
    partitionTableType = if uefi then "efi" else "legacy";
    # Built just large enough; boot.growPartition + autoResize take the flavor's disk.
    diskSize = "auto";
    additionalSpace = "1G";
    # No nixpkgs channel inside: it would make the image larger and change its hash whenever
    # the nixpkgs source changes, and these machines are rebuilt from the flake.
    copyChannel = false;
    # postVM runs on the build host after the conversion; $diskImage is then the final
    # $out/nixos.qcow2, so `file` is the absolute path of the image inside the output.
    postVM = ''
      mkdir -p $out/nix-support
      ${lib.getExe pkgs.jq} -n \
        --arg file "$diskImage" \
        --argjson info ${lib.escapeShellArg (builtins.toJSON info)} \
        '$info + { file: $file }' > $out/nix-support/image-info.json
    '';
  };
}
