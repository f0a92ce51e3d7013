# bench.mk - `make bench`: benchmarks that print figures (never pass/fail), in release mode.
# Included by the top-level Makefile; also usable alone: make -f mk/bench.mk bench
#   bench-verify       pipeline verify vs sha512sum / openssl dgst on a cached 1 GiB qcow2
#   bench-publish      pipeline run vs curl -T - vs openstack image create into the local
#                      Glance, at each size of BENCH_SIZES (GiB, default "1 4")
#   bench-promote      pipeline promote vs openstack image save + image create between the clouds
#   bench-concurrency  five profiles (1 GiB each) at concurrency 1, 2, 5 vs the slowest single
#                      publish, per Glance worker count of BENCH_WORKERS (default "1 2")
#   bench-rerun        publish-all (fixture flake, boot-check included) run again with nothing
#                      changed: wall time, every image skipped, no QEMU started
#   bench-hash         md5/sha256/sha512 throughput: sha2 0.11 (each backend), md-5, ring,
#                      aws-lc-rs and the sha2-asm/md5-asm assembly, on a 1 GiB in-memory buffer
#   bench-two-clouds   one run with --cloud local --cloud local-prod vs one cloud vs two runs
#                      (BENCH_CASES, default "a b c"); last in `bench`
# Tables are written to .run/bench/. BENCH_ROUNDS=N changes the number of rounds (default 3;
# 5 for bench-hash, whose BENCH_HASH_MIB sets the buffer size). The clouds are those of
# CLOUD_DIR (default .run/cloud), started and stopped by the benchmark when not running, on
# the harness's CLOUD_*_PORT ports. BENCH_MIB=N (MiB) replaces the GiB images, for smoke tests.

BENCH_SCRIPTS := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/../scripts/bench

.PHONY: bench bench-verify bench-publish bench-promote bench-concurrency bench-rerun bench-hash \
  bench-two-clouds

## bench: run every benchmark (release build; tables in .run/bench/)
bench: bench-verify bench-publish bench-promote bench-concurrency bench-rerun bench-hash \
  bench-two-clouds

## bench-verify: verify throughput vs sha512sum and openssl on a 1 GiB image
bench-verify:
	bash '$(BENCH_SCRIPTS)/verify.sh'

## bench-publish: publish 1 and 4 GiB with pipeline, curl and the openstack CLI (local cloud)
bench-publish:
	bash '$(BENCH_SCRIPTS)/publish.sh'

## bench-promote: copy 1 GiB from local to local-prod with pipeline and the openstack CLI
bench-promote:
	bash '$(BENCH_SCRIPTS)/promote.sh'

## bench-two-clouds: one run publishing into local and local-prod vs one cloud vs two runs
bench-two-clouds:
	bash '$(BENCH_SCRIPTS)/two_clouds.sh'

## bench-concurrency: five profiles at concurrency 1, 2, 5 vs the slowest single publish (Glance workers 1, 2)
bench-concurrency:
	bash '$(BENCH_SCRIPTS)/concurrency.sh'

## bench-rerun: publish-all again with nothing changed: wall time, all skipped, no QEMU started
bench-rerun:
	bash '$(BENCH_SCRIPTS)/rerun.sh'

## bench-hash: md5/sha256/sha512 throughput of sha2's backends, md-5, ring and aws-lc-rs (bench/hash)
bench-hash:
	bash '$(BENCH_SCRIPTS)/hash.sh'
