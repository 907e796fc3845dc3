#!/usr/bin/env bash
# Drives keysvc's sign endpoints with wrk (Debian package) over TLS, with
# audit on, at 1, 64 and 1000 connections, and measures the raw C_Sign rate
# of the same SoftHSM token in the same run (keysvc rawbench). Prints ops/s,
# p50/p99 and the ratios to raw. Usage: scripts/bench-keysvc.sh [duration]
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
DUR=${1:-10s}
PORT=${PORT:-18443}
BATCH=${BATCH:-50}
command -v wrk >/dev/null || { echo "bench: wrk missing: apt-get install -y wrk" >&2; exit 1; }
ulimit -n 8192 2>/dev/null || true
DIR=$(mktemp -d)
go build -o "$DIR/keysvc" ./cmd/keysvc
"$DIR/keysvc" -dev -data-dir "$DIR/data" -listen "127.0.0.1:$PORT" >"$DIR/keysvc.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
URL="https://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -skf "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
export TOKEN
TOKEN=$(cat "$DIR/data/dev-admin.token")
create_bench_key "$URL"

write_sign_lua "$DIR/sign.lua"
items=$(printf '{"message":"aGVsbG8gYmFuaw=="},%.0s' $(seq 1 "$BATCH")); items=${items%,}
cat >"$DIR/batch.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"items":[$items]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA

raw1=$("$DIR/keysvc" rawbench -dev -data-dir "$DIR/data" -label kw/bench/v1 -goroutines 1 -duration 5s | awk '{print $(NF-1)}')
raw2=$("$DIR/keysvc" rawbench -dev -data-dir "$DIR/data" -label kw/bench/v1 -goroutines 2 -duration 5s | awk '{print $(NF-1)}')
raw=$(awk -v a="$raw1" -v b="$raw2" 'BEGIN{print (a>b)?a:b}')

run() { # name script conns per-request-ops
  local out rps p50 p99 errs threads=2
  [ "$3" -lt 2 ] && threads=1
  out=$(wrk -t"$threads" -c"$3" -d"$DUR" --timeout 10s --latency -s "$DIR/$2" "$URL/v1/keys/bench/$1")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
  errs=$(echo "$out" | awk '/Non-2xx/ {print $NF} /Socket errors/ {print}' | tr '\n' ' ')
  awk -v n="$1" -v c="$3" -v r="$rps" -v k="$4" -v raw="$raw" -v p50="$p50" -v p99="$p99" -v e="$errs" \
    'BEGIN{ printf "%-10s %6d %12.0f %10.2f %10.2f %8.2f  %s\n", n, c, r*k, p50, p99, r*k/raw, e }'
}
echo "raw C_Sign on the same token: 1 goroutine $raw1 ops/s, 2 goroutines $raw2 ops/s (ratios use $raw)"
printf "%-10s %6s %12s %10s %10s %8s  %s\n" endpoint conns "sign ops/s" "p50 ms" "p99 ms" "x raw" "errors"
for c in ${CONNS:-1 64 1000}; do run sign sign.lua "$c" 1; done
for c in ${CONNS:-1 64 1000}; do run sign-batch batch.lua "$c" "$BATCH"; done

