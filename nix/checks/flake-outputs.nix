# Offline check of flake.nix's wiring: calls its real `outputs` function with nixpkgs replaced
# by a stub that provides only lib.genAttrs, and returns the names of the outputs. Nothing
# that needs nixpkgs is forced (attribute names are lazy in their values), so this runs
# without network and proves only what it says: which profiles, images, modules and packages
# flake.nix declares, and which nixpkgs branch it pins.
#
#   nix-instantiate --eval --strict --json nix/checks/flake-outputs.nix
let
  flake = import ../flake.nix;
  stubNixpkgs.lib.genAttrs = names: f:
    builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
  outputs = flake.outputs { self = outputs; nixpkgs = stubNixpkgs; };
in
{
  nixpkgs = flake.inputs.nixpkgs.url;
  profiles = import ../profiles.nix;
  nixosConfigurations = builtins.attrNames outputs.nixosConfigurations;
  images = builtins.attrNames outputs.images;
  nixosModules = builtins.attrNames outputs.nixosModules;
  packages = builtins.attrNames outputs.packages.x86_64-linux;
  # Every profile module must exist where flake.nix looks for it.
  profileModules = map (p: builtins.pathExists (../modules/profiles + "/${p}.nix")) (import ../profiles.nix);
}
