# Evaluates the nightly module with a minimal stand-in for nixpkgs' lib (nixpkgs is not
# available offline) and reports the facts tests/it/prod_flake.rs checks: allowed-users is
# added to at the option's default priority (merged with NixOS's [ "*" ], never replacing it),
# nix is on the unit's PATH, the checkout is read-only to the unit, and the run's metrics
# reach node_exporter's textfile directory exactly when the collector has one.
let
  lib = {
    mkEnableOption = description: { inherit description; };
    mkOption = option: option;
    mkIf = condition: value: if condition then value else { };
    mkOptionDefault = value: { _type = "override"; priority = 1500; content = value; };
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    any = builtins.any;
    getExe = package: "${package.name}/bin/pipeline";
    types = {
      nullOr = type: type;
      str = "str";
      package = "package";
      listOf = type: type;
    };
  };
  utils.escapeSystemdExecArgs = args: builtins.concatStringsSep " " args;
  pkgs.git = { name = "git"; };
  configWith = node: extra: {
    services.prometheus.exporters.node = node;
    services.hephaestus-nightly = {
      enable = true;
      package = { name = "pipeline"; };
      root = "/var/lib/hephaestus-nightly/hephaestus";
      cloud = "staging";
      cloudsYaml = "/etc/hephaestus/clouds.yaml";
      onCalendar = "daily";
      randomizedDelaySec = "1h";
      extraArgs = [ ];
      metricsTextfileDirectory = null;
    } // extra;
    nix.package = { name = "nix"; };
    nix.settings.allowed-users = [ "*" "hephaestus-nightly" ];
  };
  evaluate = config:
    let module = import ../modules/pipeline-nightly.nix { inherit config lib pkgs utils; };
    in module.config.content or module.config;
  exporter = {
    enable = true;
    enabledCollectors = [ "systemd" ];
    extraFlags = [ "--collector.textfile.directory=/var/lib/node-exporter-text" ];
  };
  config = configWith exporter { };
  cfg = evaluate config;
  unit = cfg.systemd.services.hephaestus-nightly;
  link = "L+ /var/lib/node-exporter-text/hephaestus-nightly.prom - - - - /var/lib/hephaestus-nightly/metrics.prom";
in
{
  metricsWritten = builtins.match ".*--metrics /var/lib/hephaestus-nightly/metrics.prom.*"
    unit.serviceConfig.ExecStart != null;
  metricsInTextfileDirectory = cfg.systemd.tmpfiles.rules == [ link ]
    && (evaluate (configWith { enable = false; inherit (exporter) extraFlags; } { })).systemd.tmpfiles.rules == [ ]
    && (evaluate (configWith (exporter // { disabledCollectors = [ "textfile" ]; }) { })).systemd.tmpfiles.rules == [ ]
    && (evaluate (configWith { } { metricsTextfileDirectory = "/srv/text"; })).systemd.tmpfiles.rules
    == [ "L+ /srv/text/hephaestus-nightly.prom - - - - /var/lib/hephaestus-nightly/metrics.prom" ];
  allowedUsersMerged = cfg.nix.settings.allowed-users._type or null == "override"
    && cfg.nix.settings.allowed-users.priority == 1500;
  nixOnPath = builtins.elem config.nix.package unit.path;
  checkoutReadOnly = builtins.elem config.services.hephaestus-nightly.root unit.serviceConfig.ReadOnlyPaths;
  assertionsPass = builtins.all (a: a.assertion) cfg.assertions;
}
