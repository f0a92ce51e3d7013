# Evaluates the sunraku profile module with a minimal stand-in for nixpkgs' lib (nixpkgs is not
# available offline) and returns the messages of its failing assertions, for the values given.
# Used by tests/it/prod_flake.rs: the placeholders must fail with a message naming the option,
# real values must pass.
{ domain, oidcIssuer }:
let
  lib = {
    mkOption = option: option;
    mkDefault = value: value;
    mkIf = condition: value: if condition then value else { };
    optional = condition: value: if condition then [ value ] else [ ];
    types = {
      str = "str";
      nullOr = type: type;
    };
  };
  config.hephaestus.netbird = {
    inherit domain oidcIssuer;
    acmeEmail = null;
  };
  module = import ../modules/profiles/sunraku.nix { inherit config lib; };
in
map (a: a.message) (builtins.filter (a: !a.assertion) module.config.assertions)
