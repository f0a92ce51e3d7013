# Evaluates the nightly module with a minimal stand-in for nixpkgs' lib (nixpkgs is not
# available offline) and reports the facts offline.sh checks: allowed-users is added to at the
# option's default priority (merged with NixOS's [ "*" ], never replacing it), nix is on the
# unit's PATH, and the checkout is read-only to the unit.
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
      str = "str";
      package = "package";
      listOf = type: type;
    };
  };
  utils.escapeSystemdExecArgs = args: builtins.concatStringsSep " " args;
  pkgs.git = { name = "git"; };
  config = {
    services.hephaestus-nightly = {
      enable = true;
      package = { name = "pipeline"; };
      root = "/var/lib/hephaestus-nightly/hephaestus";
      cloud = "staging";
      cloudsYaml = "/etc/hephaestus/clouds.yaml";
      onCalendar = "daily";
      randomizedDelaySec = "1h";
      extraArgs = [ ];
    };
    nix.package = { name = "nix"; };
    nix.settings.allowed-users = [ "*" "hephaestus-nightly" ];
  };
  module = import ../modules/pipeline-nightly.nix { inherit config lib pkgs utils; };
  cfg = module.config.content or module.config;
  unit = cfg.systemd.services.hephaestus-nightly;
in
{
  allowedUsersMerged = cfg.nix.settings.allowed-users._type or null == "override"
    && cfg.nix.settings.allowed-users.priority == 1500;
  nixOnPath = builtins.elem config.nix.package unit.path;
  checkoutReadOnly = builtins.elem config.services.hephaestus-nightly.root unit.serviceConfig.ReadOnlyPaths;
  assertionsPass = builtins.all (a: a.assertion) cfg.assertions;
}
