# Offline check of the pipeline package's install steps: calls nix/pkgs/pipeline.nix with
# nixpkgs replaced by stubs (buildRustPackage returns its arguments), and returns what the
# build would run after `cargo install`. tests/it/prod_flake.rs runs that script against the
# real binary with stand-ins for installShellFiles' and makeWrapper's shell functions, so the
# man pages and completions the package installs are checked without nixpkgs.
#
#   nix-instantiate --eval --strict --json nix/checks/package.nix
let
  lib = {
    importTOML = file: builtins.fromTOML (builtins.readFile file);
    fileset = {
      toSource = _: null;
      unions = _: null;
    };
    makeBinPath = _: "/stub/bin";
    optionalString = cond: text: if cond then text else "";
    licenses.asl20 = null;
    platforms.linux = [ ];
  };
  package = import ../pkgs/pipeline.nix {
    inherit lib;
    stdenv = {
      buildPlatform.canExecute = _: true;
      hostPlatform = { };
    };
    rustPlatform.buildRustPackage = arguments: arguments;
    makeWrapper = "makeWrapper";
    installShellFiles = "installShellFiles";
    qemu-utils = null;
    qemu_kvm = null;
    nix = null;
  };
in
{
  inherit (package) postInstall nativeBuildInputs;
}
