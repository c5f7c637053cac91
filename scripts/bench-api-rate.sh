#!/usr/bin/env bash
# Admin API latency at a fixed request rate (the issue's measure: p50/p99 at 1,000 req/s), with
# parla-http-rate (open loop, latency from each request's scheduled start). A release
# `parla serve` on a fresh data dir, one owner, one active bot, CONVERSATIONS conversations:
#   baseline  GET /healthz                              (same server, no auth, no store)
#   1.        GET /api/bots                             (token check + a tenant-scoped read)
#   2.        POST /api/conversations/{id}/messages     (through the actor, durable, answered)
# Usage: scripts/bench-api-rate.sh [RATE] [SECONDS] [CONVERSATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
rate="${1:-1000}"; secs="${2:-20}"; convs="${3:-10}"
cargo build --release --locked -p parla -p parla-loadtest >&2
data=$(mktemp -d /var/tmp/parla-api.XXXXXX)
log="$data/serve.log"
PARLA__AUTH__IP_REQUESTS_PER_15MIN=1000000 PARLA__RESPONDER__TOKEN_DELAY_MS=0 RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/parla" serve --listen 127.0.0.1:0 --data-dir "$data" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
base=$(sed -n 's/^parla: listening on //p' "$log")
addr=${base#http://}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
json() { curl -fsS -H 'content-type: application/json' "$@"; }
json "$base/api/auth/register" -d '{"email":"bench@example.com","password":"a long enough password","name":"B"}' >/dev/null
token=$(json "$base/api/auth/login" -d '{"email":"bench@example.com","password":"a long enough password"}' | field access_token)
auth="Authorization: Bearer $token"
bot=$(json "$base/api/bots" -H "$auth" -d '{"name":"bench"}' | field id)
json "$base/api/bots/$bot/publish" -H "$auth" -d '{}' >/dev/null
paths=()
for _ in $(seq "$convs"); do
  conv=$(json "$base/api/conversations" -H "$auth" -d "{\"bot_id\":\"$bot\"}" | field conversation_id)
  paths+=(--path "/api/conversations/$conv/messages")
done
rate_bin="$CARGO_TARGET_DIR/release/parla-http-rate"
echo "# $(date -u +%F) $(nproc) cores; $rate req/s for ${secs} s after a 2 s warm-up; release build"
echo "| target | rate | achieved | measured | p50 ms | p95 ms | p99 ms | max ms | service p50 ms | service p99 ms | non-2xx | errors | connections |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
"$rate_bin" --addr "$addr" --rate "$rate" --seconds "$secs" --path /healthz --label "GET /healthz (baseline)"
"$rate_bin" --addr "$addr" --rate "$rate" --seconds "$secs" --path /api/bots --token "$token" --label "GET /api/bots"
"$rate_bin" --addr "$addr" --rate "$rate" --seconds "$secs" --method POST "${paths[@]}" --token "$token" \
  --body '{"client_msg_id":"m{n}","text":"hello there"}' --label "POST /api/conversations/{id}/messages ($convs conversations)"
