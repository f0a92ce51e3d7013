# makise: Kubernetes server node 2 of 3 for the OpenStack control plane; joins lucy.
{ ... }:
{
  imports = [ ../kubernetes-node.nix ];

  hephaestus.profile = "makise";
  hephaestus.boot = "uefi";

  hephaestus.kubernetes.serverAddr = "https://lucy:6443";
}
