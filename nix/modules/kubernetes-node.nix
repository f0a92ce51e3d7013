# A Kubernetes server node of the cluster that hosts the OpenStack control plane (lucy, makise
# and quinn run one each; all three are servers, so etcd and the API survive losing one).
#
# Distribution: k3s through nixpkgs' services.k3s. It is one binary with containerd
# embedded (no separate container runtime to keep in step), HA through embedded etcd with
# three servers, a conformant Kubernetes API for the OpenStack Helm charts, and the NixOS
# module that nixpkgs tests most. The alternatives in nixpkgs were weighed: services.kubernetes
# assembles upstream components with its own PKI (easyCerts) and has no HA etcd story of its
# own; services.rke2 is closer to upstream hardening but its module is younger.
{ config, lib, pkgs, ... }:
let
  cfg = config.hephaestus.kubernetes;
in
{
  options.hephaestus.kubernetes = {
    clusterInit = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Whether this node starts the embedded etcd cluster. Exactly one node does (lucy); the
        others join it through `serverAddr`.
      '';
    };

    serverAddr = lib.mkOption {
      type = lib.types.str;
      default = "";
      example = "https://lucy:6443";
      description = ''
        API endpoint of the node to join; empty on the node with `clusterInit`. Host names
        resolve through the Neutron DNS of the instances' network (the Nova instance name).
      '';
    };

    tokenFile = lib.mkOption {
      type = lib.types.str;
      default = "/var/lib/hephaestus/k3s-token";
      description = ''
        File holding the cluster's shared secret, identical on all three nodes. It is not in
        the image (the image is public to the project): provide it at boot, e.g. with
        cloud-init `write_files` in the instance's user-data. k3s stays stopped until it exists.
      '';
    };
  };

  config = {
    services.k3s = {
      enable = true;
      role = "server";
      inherit (cfg) clusterInit serverAddr;
      tokenFile = cfg.tokenFile;
      extraFlags = [
        # The OpenStack Helm charts bring their own ingress-nginx; Traefik would take 80/443.
        "--disable=traefik"
        "--write-kubeconfig-mode=0600"
        # Encrypt Secrets in etcd: the OpenStack service passwords live there.
        "--secrets-encryption"
      ];
    };
    # Skipped, not failed, until the token is provisioned; cloud-init's write_files runs in
    # cloud-init.service, so order after it.
    systemd.services.k3s = {
      after = [ "cloud-init.service" ];
      unitConfig.ConditionPathExists = cfg.tokenFile;
    };

    # containerd's overlayfs snapshotter, and bridged pod traffic seen by iptables (kube-proxy,
    # network policies). Loaded before systemd-sysctl applies the bridge sysctls below.
    boot.kernelModules = [ "overlay" "br_netfilter" ];
    boot.kernel.sysctl = {
      "net.ipv4.ip_forward" = 1;
      "net.ipv6.conf.all.forwarding" = 1;
      "net.bridge.bridge-nf-call-iptables" = 1;
      "net.bridge.bridge-nf-call-ip6tables" = 1;
    };

    # etcd and TLS certificates need agreeing clocks; chrony steps and slews better than
    # timesyncd after a VM is paused or migrated.
    services.chrony.enable = true;
    services.timesyncd.enable = false;

    networking.firewall = {
      allowedTCPPorts = [
        6443 # Kubernetes API (k3s supervisor on the same port)
        10250 # kubelet: logs, exec, metrics-server
        # The OpenStack APIs (Keystone, Glance, Nova, Neutron, Placement, Horizon, ...) are
        # published by the Helm charts through ingress-nginx on 80/443 by host name, so only
        # the ingress ports are opened, never each service's native port (5000, 9292, 8774,
        # 9696, 8778): those stay inside the cluster network.
        80
        443
      ];
      allowedTCPPortRanges = [
        { from = 2379; to = 2380; } # embedded etcd: clients and peers
      ];
      allowedUDPPorts = [
        8472 # flannel VXLAN between the nodes (k3s' default backend)
      ];
      # Pod and service traffic is policed by Kubernetes, not by the host firewall.
      trustedInterfaces = [ "cni0" "flannel.1" ];
    };

    environment.systemPackages = [ pkgs.kubernetes-helm ];
  };
}
