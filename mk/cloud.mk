# cloud.mk - the local Keystone + Glance harness (clouds on 127.0.0.1: local, local-prod,
# local-small, local-short, local-short-b; CLOUD_NAMES picks fewer).
# Included by the top-level Makefile; also usable alone: make -f mk/cloud.mk cloud-up
# Needs python3 (>= 3.10, with venv), curl and flock; Python packages come from PyPI only.
# CLOUD_GLANCE_WORKERS=N (default 1): gunicorn worker processes of every Glance cloud-up
# starts, e.g. make cloud-up CLOUD_GLANCE_WORKERS=2 (a running cloud keeps its count until
# cloud-down). Ports: CLOUD_LOCAL_KEYSTONE_PORT, CLOUD_LOCAL_GLANCE_PORT, CLOUD_PROD_*, ...
# (scripts/cloud/common.sh).

CLOUD_DIR ?= $(CURDIR)/.run/cloud
CLOUD_SCRIPTS := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../scripts/cloud)

.PHONY: cloud-install cloud-up cloud-down cloud-purge

## cloud-install: build the cached Keystone + Glance venv (no-op when it exists)
cloud-install:
	@$(CLOUD_SCRIPTS)/install.sh >/dev/null

## cloud-up: start the local clouds (idempotent); writes $(CLOUD_DIR)/clouds.yaml and env.sh
cloud-up:
	@CLOUD_DIR='$(CLOUD_DIR)' $(CLOUD_SCRIPTS)/up.sh

## cloud-down: stop the local clouds, keep their state
cloud-down:
	@CLOUD_DIR='$(CLOUD_DIR)' $(CLOUD_SCRIPTS)/down.sh

## cloud-purge: stop the local clouds and delete their state (the venv is kept)
cloud-purge:
	@CLOUD_DIR='$(CLOUD_DIR)' PURGE=1 $(CLOUD_SCRIPTS)/down.sh
