# bench.mk - `make bench`: benchmarks that print figures (never pass/fail), in release mode.
# Included by the top-level Makefile; also usable alone: make -f mk/bench.mk bench
#   bench-verify    pipeline verify vs sha512sum / openssl dgst on a cached 1 GiB qcow2
#   bench-publish   pipeline run vs curl -T - vs openstack image create into the local Glance
#   bench-promote   pipeline promote vs openstack image save + image create between the clouds
# Tables are written to .run/bench/. BENCH_ROUNDS=N changes the number of rounds (default 3).

BENCH_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/../scripts/bench

.PHONY: bench bench-verify bench-publish bench-promote

## bench: run every benchmark (release build; tables in .run/bench/)
bench: bench-verify bench-publish bench-promote

## bench-verify: verify throughput vs sha512sum and openssl on a 1 GiB image
bench-verify:
	bash '$(BENCH_SCRIPTS)/verify.sh'

## bench-publish: publish 1 GiB with pipeline, curl and the openstack CLI (local cloud)
bench-publish:
	bash '$(BENCH_SCRIPTS)/publish.sh'

## bench-promote: copy 1 GiB from local to local-prod with pipeline and the openstack CLI
bench-promote:
	bash '$(BENCH_SCRIPTS)/promote.sh'
