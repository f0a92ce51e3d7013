# bench.mk - `make bench`: benchmarks that print figures (never pass/fail), in release mode.
# Included by the top-level Makefile; also usable alone: make -f mk/bench.mk bench
#   bench-verify   pipeline verify vs sha512sum / openssl dgst on a cached 1 GiB qcow2
# Results are written under .run/bench/. BENCH_ROUNDS=N changes the number of rounds.

BENCH_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/../scripts/bench

.PHONY: bench bench-verify

## bench: run every benchmark (release build; figures in .run/bench/)
bench: bench-verify

## bench-verify: verify throughput vs sha512sum and openssl on a 1 GiB image
bench-verify:
	bash '$(BENCH_SCRIPTS)/verify.sh'
