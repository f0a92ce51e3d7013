# nixosModules.pipeline-nightly: refresh the published images every night by running
# `pipeline run nightly` from a checkout of this repository, as an unprivileged system user.
#
# The run evaluates and builds NixOS images, so it talks to the host's nix daemon through
# /nix/var/nix/daemon-socket/socket (AF_UNIX, and connecting works on the read-only /nix that
# ProtectSystem=strict leaves): the host needs nix-daemon (the NixOS default) and must allow
# the user (nix.settings.allowed-users, added to below, never replaced). The builds run in the daemon, outside
# this sandbox, with the host's substituters.
#
# Every run writes its metrics (`pipeline run --metrics`, node_exporter's textfile format) to
# /var/lib/hephaestus-nightly/metrics.prom. When node_exporter's textfile collector has a
# directory (services.prometheus.exporters.node with --collector.textfile.directory=DIR in its
# extraFlags, nixpkgs having no option of its own for it), or metricsTextfileDirectory names
# one, a symlink DIR/hephaestus-nightly.prom points at that file: the collector reads it, and
# its directory's owner and mode are left as they are.
{ config, lib, pkgs, utils, ... }:
let
  cfg = config.services.hephaestus-nightly;
  name = "hephaestus-nightly";
  stateDir = "/var/lib/${name}";
  metricsFile = "${stateDir}/metrics.prom";
  node = config.services.prometheus.exporters.node or { };
  textfileFlag = "--collector.textfile.directory=";
  flagged = builtins.filter (f: lib.hasPrefix textfileFlag f) (node.extraFlags or [ ]);
  textfileOn = (node.enable or false) && flagged != [ ]
    && !(builtins.elem "textfile" (node.disabledCollectors or [ ]));
  textfileDir =
    if cfg.metricsTextfileDirectory != null then cfg.metricsTextfileDirectory
    else if textfileOn then
      builtins.substring (builtins.stringLength textfileFlag) (-1) (builtins.head flagged)
    else null;
in
{
  options.services.hephaestus-nightly = {
    enable = lib.mkEnableOption "the nightly Hephaestus image refresh (`pipeline run nightly`)";

    package = lib.mkOption {
      type = lib.types.package;
      # The flake sets it to its own packages.<system>.pipeline; see nix/flake.nix.
      description = "The package providing the `pipeline` command.";
    };

    root = lib.mkOption {
      type = lib.types.str;
      example = "/var/lib/hephaestus-nightly/hephaestus";
      description = ''
        Pipeline root: a git checkout of the Hephaestus repository (pipelines/, profiles/,
        nix/ with its committed flake.lock). Not under /home (ProtectHome hides it). The
        service only reads it: a checkout without nix/flake.lock would make nix try to write
        one, which the read-only file system refuses.
      '';
    };

    cloud = lib.mkOption {
      type = lib.types.str;
      example = "production";
      description = "Entry of clouds.yaml to publish into (`--cloud`).";
    };

    cloudsYaml = lib.mkOption {
      # A string, not a path: a Nix path literal would copy the credentials into the
      # world-readable store.
      type = lib.types.str;
      example = "/etc/hephaestus/clouds.yaml";
      description = ''
        clouds.yaml holding the credentials. Read by systemd (as root) and handed to the
        service as a credential, so it can stay root-only (mode 0600).
      '';
    };

    onCalendar = lib.mkOption {
      type = lib.types.str;
      default = "*-*-* 02:00:00";
      description = "When to run, as a systemd calendar expression (systemd.time(7)).";
    };

    randomizedDelaySec = lib.mkOption {
      type = lib.types.str;
      default = "30min";
      description = "Random delay added to each start, so several hosts do not hit Glance at once.";
    };

    metricsTextfileDirectory = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/var/lib/prometheus-node-exporter-text-files";
      description = ''
        node_exporter's textfile directory, where hephaestus-nightly.prom (a symlink to the
        run's metrics) is placed. Default: the --collector.textfile.directory of
        services.prometheus.exporters.node when that is enabled; null when there is none.
      '';
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "--profile" "sunraku" ];
      description = "Further arguments to `pipeline run nightly`.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.cloudsYaml && lib.hasPrefix "/" cfg.root;
        message = "services.hephaestus-nightly: root and cloudsYaml must be absolute paths.";
      }
      {
        # A host that sets its own allowed-users replaces the list this module adds to.
        assertion = lib.any (u: u == "*" || u == name) config.nix.settings.allowed-users;
        message = "services.hephaestus-nightly: nix.settings.allowed-users does not allow the "
          + "user ${name}; add \"${name}\" to nix.settings.allowed-users.";
      }
    ];

    users.users.${name} = {
      isSystemUser = true;
      group = name;
      home = stateDir;
    };
    users.groups.${name} = { };
    # At the option's default priority, so it merges with NixOS's default [ "*" ] instead of
    # replacing it (a plain definition would lock every other user out of the daemon).
    nix.settings.allowed-users = lib.mkOptionDefault [ name ];

    systemd.services.${name} = {
      description = "Hephaestus nightly image refresh";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "nix-daemon.socket" ];
      requires = [ "nix-daemon.socket" ];
      # The pipeline runs nix; nix runs git to read a flake from a git checkout.
      path = [ config.nix.package pkgs.git ];

      environment = {
        # %d: the credentials directory, where LoadCredential puts clouds.yaml.
        OS_CLIENT_CONFIG_FILE = "%d/clouds.yaml";
        # Talk to the daemon even if a future nix would try a local store first.
        NIX_REMOTE = "daemon";
        HOME = stateDir;
        XDG_CACHE_HOME = "%C/${name}";
        # The build's out-links are GC roots that the daemon must be able to follow: a link in
        # this unit's private /tmp is invisible to the daemon, which would treat the root as
        # dead and could collect the image mid-run. /run/hephaestus-nightly is shared.
        TMPDIR = "%t/${name}";
      };

      serviceConfig = {
        Type = "oneshot";
        User = name;
        Group = name;
        ExecStart = utils.escapeSystemdExecArgs ([
          (lib.getExe cfg.package)
          "run"
          "nightly"
          "--root"
          cfg.root
          "--cloud"
          cfg.cloud
          "--report"
          "${stateDir}/last-run.json"
          "--metrics"
          metricsFile
          # GC roots, serial logs and the per-cloud run lock: the root is read-only here, and
          # the daemon must see the out-links (see TMPDIR above).
          "--run-dir"
          "/run/${name}"
        ] ++ cfg.extraArgs);
        WorkingDirectory = cfg.root;
        # The checkout is read, never written, even when it lies in the state directory.
        ReadOnlyPaths = [ cfg.root ];
        LoadCredential = [ "clouds.yaml:${cfg.cloudsYaml}" ];

        StateDirectory = name;
        CacheDirectory = name;
        RuntimeDirectory = name;
        UMask = "0077";

        # Hardening. Writable: only the state, cache and runtime directories above (systemd
        # makes *Directory= paths writable itself, so no ReadWritePaths is needed); everything
        # else is read-only or hidden.
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        # /dev/kvm is hidden as well: boot-check runs QEMU with TCG, as the pipeline does by
        # default. MemoryDenyWriteExecute is deliberately absent: TCG generates code at run time.
        PrivateDevices = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        LockPersonality = true;
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectProc = "invisible";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
      };
    };

    systemd.tmpfiles.rules =
      if textfileDir == null then [ ]
      else [ "L+ ${textfileDir}/${name}.prom - - - - ${metricsFile}" ];

    systemd.timers.${name} = {
      description = "Nightly Hephaestus image refresh";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.onCalendar;
        # Catch up on a run missed while the host was off.
        Persistent = true;
        RandomizedDelaySec = cfg.randomizedDelaySec;
      };
    };
  };
}
