# flake.mk - offline checks of the production flake in nix/. Included by the top-level Makefile;
# also usable alone: make -f mk/flake.mk check-flake
# Needs nix-instantiate (make install-nix); never nixpkgs or the network. What these checks do
# not cover (locking, building, booting the real images) is listed in nix/README.md.
# The checks themselves live in one place, tests/it/prod_flake.rs (so `make test` runs them
# with the rest); check-flake runs the lint (deadnix, nixpkgs-fmt), then those tests alone.

FLAKE_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
CARGO ?= cargo

.PHONY: check-flake lint-flake install-nix-lint

## check-flake: lint-flake, then the offline flake tests: parse nix/, outputs and boot modes against profiles/, placeholders, nightly module, package
check-flake: lint-flake
	@cd '$(FLAKE_DIR)' && $(CARGO) test --locked --test it -- prod_flake::

## lint-flake: deadnix and nixpkgs-fmt --check on nix/ (pinned, installed by install-nix-lint)
lint-flake:
	@tools=$$(bash '$(FLAKE_DIR)/scripts/install-nix-lint.sh') && \
	  sh '$(FLAKE_DIR)/nix/checks/lint.sh' '$(FLAKE_DIR)' "$$tools"

## install-nix-lint: deadnix 1.3.1 and nixpkgs-fmt 1.3.0 (cargo install, cached in ~/.cache/hephaestus/nix-lint)
install-nix-lint:
	@bash '$(FLAKE_DIR)/scripts/install-nix-lint.sh' >/dev/null
