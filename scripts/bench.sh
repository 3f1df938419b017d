#!/usr/bin/env bash
# The at-scale benchmark (issue 6, 16): 10,000 nginx-served health endpoints on loopback, the
# release daemon at a 10 s interval, then wrk with Connection: close (the floor) and
# blackbox_exporter (the peer) on the same nginx. Installs nginx, wrk and
# prometheus-blackbox-exporter from Debian's packages if missing (scripts/bench-env.sh; root). PostgreSQL at
# DATABASE_URL, as for the tests. Takes about 15 minutes; prints a table (benches/scale.rs says
# what each of its three daemon runs measures).
#
# Knobs: BENCH_TARGETS (10000), BENCH_SECONDS (60), BENCH_INTERVAL_S (10), BENCH_CAPACITY (65535),
# BENCH_CAPACITY_SECONDS (120), BENCH_HISTORY_HOURS (23), BENCH_THREADS, BENCH_PERF (a file:
# perf records the daemon over the window; `perf report -i FILE`; its CPU skews that run).
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
trap 'bash scripts/bench-env.sh down >/dev/null 2>&1 || true' EXIT
ulimit -n "$(ulimit -Hn)"
cargo bench --bench scale
