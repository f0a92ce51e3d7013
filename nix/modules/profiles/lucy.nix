# lucy: Kubernetes server node 1 of 3 for the OpenStack control plane; starts the cluster.
{ ... }:
{
  imports = [ ../kubernetes-node.nix ];

  hephaestus.profile = "lucy";
  hephaestus.boot = "uefi";

  # The first server initialises embedded etcd; makise and quinn join it.
  hephaestus.kubernetes.clusterInit = true;
}
