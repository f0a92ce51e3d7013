# The `pipeline` tool of this repository (crate `hephaestus`), built from the repository root.
#
# Only Cargo.toml, Cargo.lock and src/ enter the source, so editing nix/, profiles/,
# pipelines/ or the tests does not rebuild the tool. `../..` resolves only when the flake is
# used from the git checkout (`./nix`, i.e. git+file with dir=nix): a `path:./nix` flake copies
# nix/ alone and cannot see the crate.
{ lib
, stdenv
, rustPlatform
, makeWrapper
, installShellFiles
, qemu-utils
, qemu_kvm
, nix
}:
let
  root = ../..;
  manifest = lib.importTOML (root + "/Cargo.toml");
in
rustPlatform.buildRustPackage {
  pname = manifest.package.name;
  inherit (manifest.package) version;

  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/Cargo.toml")
      (root + "/Cargo.lock")
      (root + "/src")
    ];
  };
  cargoLock.lockFile = root + "/Cargo.lock";

  # The integration tests need a local Keystone + Glance and the fixture flake, and tests/ is
  # not in the source; the unit tests ran in the repository's own CI (`make test`).
  doCheck = false;

  nativeBuildInputs = [ makeWrapper installShellFiles ];

  # The man pages and completion scripts come from the binary itself (clap_mangen,
  # clap_complete), so they are made before it is wrapped, and only where the build machine
  # can run what it built. The source has no profiles/, so no project's names are baked into
  # the completions: they complete subcommands, flags and files.
  #
  # Run-time tools: qemu-img (image inspection), qemu-system-x86_64 (boot-check) and nix
  # (build stage). nix is appended, not prepended: on a NixOS host the system's nix, which
  # matches its daemon, keeps precedence; the wrapped one is the fallback.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    $out/bin/pipeline man --out-dir man
    installManPage man/*.1
    installShellCompletion --cmd pipeline \
      --bash <($out/bin/pipeline completions bash) \
      --zsh <($out/bin/pipeline completions zsh) \
      --fish <($out/bin/pipeline completions fish)
  '' + ''
    wrapProgram $out/bin/pipeline \
      --prefix PATH : ${lib.makeBinPath [ qemu-utils qemu_kvm ]} \
      --suffix PATH : ${lib.makeBinPath [ nix ]}
  '';

  meta = {
    inherit (manifest.package) description;
    license = lib.licenses.asl20;
    mainProgram = "pipeline";
    platforms = lib.platforms.linux;
  };
}
