#!/usr/bin/env bash
# Drives banking's USB-key transfers (issue 6 item 9, R-PERF-1): cmd/banking
# and cmd/keysvc on a throwaway SoftHSM token, TLS on every hop, 1,000
# concurrent clients by default, and prints TPS, p50/p90/p99/max latency,
# errors and the CPU each process used. The driver is TestBenchBanking in
# softhsm-tests/ (bankbench_test.go), which documents every setting.
#
# Usage: scripts/bench-banking.sh [duration]      e.g. scripts/bench-banking.sh 20s
# Environment: KEYWARD_BENCH_CLIENTS, KEYWARD_BENCH_CUSTOMERS,
# KEYWARD_BENCH_WARMUP, KEYWARD_BENCH_RATE (offered TPS: open loop instead
# of the default closed loop), KEYWARD_BENCH_BATCH, KEYWARD_BENCH_BATCH_DELAY,
# KEYWARD_BENCH_PERF (a directory for `perf record` data of both servers).
set -euo pipefail
cd "$(dirname "$0")/.."
export KEYWARD_BENCH_BANKING=1
export KEYWARD_BENCH_DURATION=${1:-${KEYWARD_BENCH_DURATION:-20s}}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
go test -count=1 -timeout 30m -run '^TestBenchBanking$' -v ./softhsm-tests 2>&1 |
  grep -v -e '^=== RUN' -e ' INFO ' -e 'level=INFO'
