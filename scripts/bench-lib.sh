# Shared by scripts/bench-keysvc.sh and scripts/bench-cluster.sh (sourced,
# not run): the benchmark key, the wrk script that signs with it, and the
# reading of wrk's latencies, so that both benchmarks drive and report the
# same request the same way.

# BENCH_KEY: the key both benchmarks sign with (an hsm ECDSA P-256 key the
# dev client may sign with).
BENCH_KEY='{"name":"bench","purpose":"sign","algorithm":"ec-p256","protection":"hsm","policy":{"grants":[{"client":"dev","ops":["sign"]}]}}'

# create_bench_key URL: creates BENCH_KEY on the keysvc at URL as $TOKEN.
create_bench_key() {
  curl -skf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -X POST "$1/v1/keys" -d "$BENCH_KEY" >/dev/null
}

# write_sign_lua FILE: the wrk script of one sign request (a 10-byte
# message), bearer $TOKEN read from the environment when wrk runs.
write_sign_lua() {
  cat >"$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"message":"aGVsbG8gYmFuaw=="}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
LUA
}

# ms converts wrk's "1.23ms" / "456.00us" / "1.20s" to milliseconds.
ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else {sub(/s$/,"",v); print v*1000} }'; }
