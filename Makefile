# Hephaestus image pipeline. The two commands a newcomer needs (see README.md):
#   make demo   the main job on the built-in local setup
#   make test   everything CI checks
# `make help` lists the other targets.

SHELL := /bin/bash
CARGO ?= cargo
PIPELINE := target/debug/pipeline

# Pieces that own their own targets: Nix (offline settings, exported to every recipe), the
# local Keystone + Glance clouds, QEMU for the boot check, the production flake's offline
# checks, and the benchmarks.
include mk/nix.mk
include mk/cloud.mk
include mk/boot.mk
include mk/flake.mk
include mk/bench.mk

.PHONY: help install-deps build lint test demo clean

## help: list the targets
help:
	@grep -hE '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

## install-deps: install what a fresh Debian machine lacks (idempotent; root + apt + PyPI)
install-deps: install-nix install-boot cloud-install

## build: compile the pipeline tool (debug profile, shared by tests and demo)
build:
	$(CARGO) build --locked --all-targets

## lint: formatting, clippy (warnings are errors) and the floor plan of docs/architecture.md
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --test it layers

## test: lint, the flake checks, then every unit and integration test against the local clouds
test: install-deps lint build check-flake
	@$(MAKE) --no-print-directory cloud-up
	@export OS_CLIENT_CONFIG_FILE='$(CLOUD_DIR)/clouds.yaml'; \
	$(CARGO) test --locked; rc=$$?; \
	$(MAKE) --no-print-directory cloud-down; exit $$rc

## demo: publish the five fixture images into the local cloud, show them, stop the cloud
demo: install-deps build
	@$(MAKE) --no-print-directory cloud-up
	@export OS_CLIENT_CONFIG_FILE='$(CLOUD_DIR)/clouds.yaml'; \
	trap '$(MAKE) --no-print-directory cloud-down' EXIT; set -e; \
	set -x; \
	$(PIPELINE) list; \
	$(PIPELINE) validate; \
	$(PIPELINE) run publish-all --cloud local --flake fixtures/flake; \
	$(PIPELINE) images --cloud local

## clean: remove build output and run state (stops the local clouds first)
clean: cloud-down
	$(CARGO) clean
	rm -rf .run
