# The OpenStack guest every Hephaestus image is: metadata via cloud-init, QEMU guest agent,
# serial console, SSH with keys only, root file system grown to the flavor's disk.
#
# A minimal equivalent of nixpkgs' virtualisation/openstack-config.nix rather than an import of
# it: that module defaults to a legacy-BIOS GRUB on /dev/vda (UEFI only with its own
# `openstack.efi` switch), its console settings and its metadata fetcher changed between
# releases, and older releases give root an initial password. Here every choice is visible and
# the bootloader follows `hephaestus.boot`.
{ lib, modulesPath, ... }:
{
  imports = [
    # virtio drivers in the initrd, so the root disk is found on a Nova/KVM host.
    (modulesPath + "/profiles/qemu-guest.nix")
    ./options.nix
    ./boot.nix
    ./image.nix
  ];

  # tty1 for the Nova VNC/SPICE console; ttyS0 last so it is /dev/console, where the kernel,
  # systemd and the getty the boot-check waits for all write.
  boot.kernelParams = [ "console=tty1" "console=ttyS0,115200" ];

  # cloud-init reads the Nova metadata service (or a config drive): instance host name, SSH
  # keys, user-data. boot.growPartition grows the root partition (growpart.service, after
  # the root is mounted and before systemd-growfs-root), which also covers boots without
  # metadata; cloud-init's own growpart and resizefs modules find nothing left to do.
  services.cloud-init = {
    enable = true;
    network.enable = true;
    settings = {
      datasource_list = [ "ConfigDrive" "OpenStack" "None" ];
      # Keys from the metadata go to root; no other account exists and none has a password.
      # (ssh_pwauth is left unset: cloud-init would try to edit the read-only sshd_config.)
      disable_root = false;
    };
  };
  # The host name comes from the metadata (the Nova instance name), not from the image.
  networking.hostName = lib.mkDefault "";

  # The boot check's proof that the image read its metadata: it attaches a config drive with a
  # random host name and waits for "<that host name> login:" on ttyS0. agetty prints the host
  # name it finds when it starts, so the serial getty starts once cloud-init has set it (the
  # set_hostname module of cloud-init.service); started earlier, it would show the image's
  # default name and the check would rightly fail.
  systemd.services."serial-getty@ttyS0" = {
    wants = [ "cloud-init.service" ];
    after = [ "cloud-init.service" ];
  };
  networking.useNetworkd = true;

  services.qemuGuest.enable = true;

  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  # No default passwords: root's password is locked ("!" matches no hash) and no other
  # account is declared. users.mutableUsers stays on: NixOS refuses immutable users when no
  # admin has a declared password or key, and here the keys only arrive at boot (cloud-init).
  users.users.root.hashedPassword = "!";

  # The firewall is on everywhere; profiles add the ports their services need.
  networking.firewall.enable = true;

  # Images are rebuilt, not upgraded in place: no channel inside, flakes for anyone who
  # does rebuild on an instance.
  nix.settings.experimental-features = [ "nix-command" "flakes" ];

  documentation.enable = lib.mkDefault false;

  # First release whose state layout these images assume; do not bump it with nixpkgs.
  system.stateVersion = "25.11";
}
