# quinn: Kubernetes server node 3 of 3 for the OpenStack control plane; joins lucy.
{ ... }:
{
  imports = [ ../kubernetes-node.nix ];

  hephaestus.profile = "quinn";
  hephaestus.boot = "uefi";

  hephaestus.kubernetes.serverAddr = "https://lucy:6443";
}
