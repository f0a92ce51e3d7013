# flake.mk - offline checks of the production flake in nix/. Included by the top-level Makefile;
# also usable alone: make -f mk/flake.mk check-flake
# Needs nix-instantiate (make install-nix); never nixpkgs or the network. What these checks do
# not cover (locking, building, booting the real images) is listed in nix/README.md.

FLAKE_CHECK := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../nix/checks/offline.sh)

.PHONY: check-flake

## check-flake: parse nix/, match outputs and boot modes to profiles/, placeholders, nightly module
check-flake:
	@sh '$(FLAKE_CHECK)' '$(abspath $(dir $(FLAKE_CHECK))../..)'
