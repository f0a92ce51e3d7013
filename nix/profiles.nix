# The profiles this flake builds: one module each in ./modules/profiles/<name>.nix, one entry
# in nixosConfigurations and images. Kept in its own file so it can be read without nixpkgs
# (the offline checks evaluate it); it must match profiles/*.yaml.
[ "lucy" "makise" "quinn" "sunraku" "generic" ]
