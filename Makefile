# Hephaestus image pipeline. The two commands a newcomer needs (see README.md):
#   make demo   the main job on the built-in local setup
#   make test   everything CI checks
# `make help` lists the other targets.

SHELL := /bin/bash
CARGO ?= cargo
PIPELINE := target/debug/pipeline
# The demo's clouds keep their state apart from the test clouds', and start empty each time.
DEMO_CLOUD_DIR := $(CURDIR)/.run/demo-cloud
# The demo's staging and production; the other harness clouds serve the tests only.
DEMO_CLOUDS := local local-prod

# Pieces that own their own targets: Nix (offline settings, exported to every recipe), the
# local Keystone + Glance clouds, QEMU for the boot check, the production flake's offline
# checks, and the benchmarks.
include mk/nix.mk
include mk/cloud.mk
include mk/boot.mk
include mk/flake.mk
include mk/bench.mk

.PHONY: help install-deps install-ci build lint test demo fuzz schema man clean

## help: list the targets
help:
	@grep -hE '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

## install-deps: install what a fresh Debian machine lacks (idempotent; apt as root when something is missing, PyPI, npm, crates.io)
install-deps: install-nix install-boot cloud-install install-ci install-nix-lint

## install-ci: rsync, jq and the pinned gitlab-ci-local that runs docs/ci/gitlab-ci.yml in the tests
install-ci:
	@scripts/install-ci.sh >/dev/null

## build: compile the pipeline tool (debug profile, shared by tests and demo)
build:
	$(CARGO) build --locked --all-targets

## lint: formatting, clippy and rustdoc (warnings are errors: no broken doc link) and the floor plan of docs/architecture.md
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --locked --no-deps
	$(CARGO) test --locked --test it layers

## test: lint (Rust and the flake), then every unit and integration test (the flake checks among them) against the local clouds
test: install-deps lint build lint-flake
	@$(MAKE) --no-print-directory cloud-up
	@export OS_CLIENT_CONFIG_FILE='$(CLOUD_DIR)/clouds.yaml' PROPTEST_CASES=$${PROPTEST_CASES:-32}; \
	$(CARGO) test --locked; rc=$$?; \
	$(MAKE) --no-print-directory cloud-down; exit $$rc

## demo: the whole lifecycle on fresh local clouds: publish, promote, change, roll back, hold
demo: install-deps build
	@$(MAKE) --no-print-directory cloud-purge CLOUD_DIR='$(DEMO_CLOUD_DIR)' CLOUD_NAMES='$(DEMO_CLOUDS)'
	@$(MAKE) --no-print-directory cloud-up CLOUD_DIR='$(DEMO_CLOUD_DIR)' CLOUD_NAMES='$(DEMO_CLOUDS)'
	@rm -rf '$(CURDIR)/.run/demo-cache'
	@export OS_CLIENT_CONFIG_FILE='$(DEMO_CLOUD_DIR)/clouds.yaml' HEPHAESTUS_RUN_DIR='$(CURDIR)/.run/demo' \
	  HEPHAESTUS_CACHE_DIR='$(CURDIR)/.run/demo-cache'; \
	trap '$(MAKE) --no-print-directory cloud-down CLOUD_DIR="$(DEMO_CLOUD_DIR)" CLOUD_NAMES="$(DEMO_CLOUDS)"' EXIT; \
	PIPELINE='$(PIPELINE)' DEMO_DIR='$(CURDIR)/.run/demo' scripts/demo.sh

## fuzz: the property tests of every parser of untrusted bytes, with many cases (FUZZ_CASES)
fuzz:
	PROPTEST_CASES=$${FUZZ_CASES:-20000} $(CARGO) test --locked --release --test it -- props::

## schema: regenerate schemas/*.schema.json from the Rust types of the YAML files
schema:
	$(CARGO) build --locked --bin pipeline
	@for kind in pipeline profile policy; do \
	  $(PIPELINE) schema $$kind > schemas/$$kind.schema.json.tmp && \
	  mv schemas/$$kind.schema.json.tmp schemas/$$kind.schema.json || exit 1; \
	done
	@echo "schemas/: pipeline, profile and policy schemas written"

## man: write the man pages into target/man/man1 (read them with: man -M target/man pipeline)
man:
	$(CARGO) build --locked --bin pipeline
	@$(PIPELINE) man --out-dir target/man/man1

## clean: remove build output and run state (stops the local clouds first)
clean: cloud-down
	$(CARGO) clean
	rm -rf .run
