# Hephaestus image pipeline. The two commands a newcomer needs (see README.md):
#   make demo   the main job on the built-in local setup
#   make test   everything CI checks
# `make help` lists the other targets.

SHELL := /bin/bash
CARGO ?= cargo
PIPELINE := target/debug/pipeline

# Pieces that own their own targets: Nix (offline settings, exported to every recipe),
# the local Keystone + Glance clouds, and the production flake's offline checks.
include mk/nix.mk
include mk/cloud.mk
include mk/flake.mk

.PHONY: help install-deps build lint test demo clean

## help: list the targets
help:
	@grep -hE '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

## install-deps: install what a fresh Debian machine lacks (idempotent; root + apt)
install-deps: install-nix

## build: compile the pipeline tool (debug profile, shared by tests and demo)
build:
	$(CARGO) build --locked --all-targets

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## test: lint, then every unit and integration test
test: install-deps lint build check-flake
	$(CARGO) test --locked

## demo: list, validate and plan publish-all
demo: install-deps build
	$(PIPELINE) list
	$(PIPELINE) validate
	$(PIPELINE) plan publish-all

## clean: remove build output and run state
clean:
	$(CARGO) clean
	rm -rf .run
