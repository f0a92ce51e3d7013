# The production flake of Hephaestus: one NixOS configuration and one qcow2 image per profile
# in profiles/, the pipeline tool itself, and the NixOS module that runs it nightly.
#
#   nixosConfigurations.<profile>   lucy makise quinn sunraku generic
#   images.<profile>                the profile's qcow2 image + nix-support/image-info.json
#                                   (the interface of the test fixture flake, fixtures/flake)
#   nixosModules.pipeline-nightly   systemd service + timer running `pipeline run nightly`
#   packages.x86_64-linux.pipeline  the `pipeline` tool, built from the repository root
#
# flake.lock is not in the repository yet: it is created by the first build on a machine that
# can reach GitHub, with `nix flake lock ./nix`, and then committed (nix/README.md).
{
  description = "Hephaestus: NixOS images for OpenStack and the pipeline that publishes them";

  # A release branch, not unstable: the images are infrastructure, they take security fixes
  # from the release and move to the next one deliberately.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      system = "x86_64-linux";

      # One module per profile in ./modules/profiles, named as in profiles/<name>.yaml.
      # tests/it/prod_flake.rs checks this list against profiles/*.yaml.
      profiles = import ./profiles.nix;

      mkSystem = profile: lib.nixosSystem {
        modules = [
          { nixpkgs.hostPlatform = system; }
          ./modules/openstack-guest.nix
          ./modules/profiles/${profile}.nix
        ];
      };
    in
    {
      nixosConfigurations = lib.genAttrs profiles mkSystem;

      # Not under packages.<system>: the pipeline names them `images.<profile>`
      # (profiles/*.yaml `attribute`), as the fixture flake does.
      images = lib.genAttrs profiles
        (profile: self.nixosConfigurations.${profile}.config.system.build.hephaestusImage);

      nixosModules.pipeline-nightly = { pkgs, ... }: {
        imports = [ ./modules/pipeline-nightly.nix ];
        services.hephaestus-nightly.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.pipeline;
      };

      packages.${system} =
        let
          pkgs = nixpkgs.legacyPackages.${system};
        in
        {
          pipeline = pkgs.callPackage ./pkgs/pipeline.nix { };
          default = self.packages.${system}.pipeline;
        };
    };
}
