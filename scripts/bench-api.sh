#!/usr/bin/env bash
# Admin API latency under load with wrk (Debian package, installed here if missing): a release
# `parla serve` on a fresh data dir, one registered owner with one bot, then
#   1. GET /api/bots                                (a read scoped to the caller's tenant)
#   2. POST /api/conversations/{id}/messages        (through the actor, durable, then answered)
# Baseline in the same run: GET /healthz (same server, no auth, no store).
# Usage: scripts/bench-api.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
secs="${1:-10}"; conns="${2:-50}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked -p parla >&2
data=$(mktemp -d /var/tmp/parla-api.XXXXXX)
log="$data/serve.log"
PARLA__AUTH__IP_REQUESTS_PER_15MIN=1000000 PARLA__RESPONDER__TOKEN_DELAY_MS=0 RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/parla" serve --listen 127.0.0.1:0 --data-dir "$data" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
base=$(sed -n 's/^parla: listening on //p' "$log")
json() { curl -s -H 'content-type: application/json' "$@"; }
json "$base/api/auth/register" -d '{"email":"bench@example.com","password":"a long enough password","name":"B"}' >/dev/null
token=$(json "$base/api/auth/login" -d '{"email":"bench@example.com","password":"a long enough password"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
auth="Authorization: Bearer $token"
bot=$(json "$base/api/bots" -H "$auth" -d '{"name":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
json "$base/api/bots/$bot/publish" -H "$auth" -d '{}' >/dev/null
conv=$(json "$base/api/conversations" -H "$auth" -d "{\"bot_id\":\"$bot\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["conversation_id"])')
post="$data/post.lua"
cat >"$post" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local body = '{"client_msg_id":"' .. tostring(math.random(1, 1e12)) .. '-' .. counter .. '","text":"hello"}'
  return wrk.format("POST", "/api/conversations/$conv/messages", {["Content-Type"]="application/json", ["Authorization"]="Bearer $token"}, body)
end
LUA
echo "# $(date -u +%F) $(nproc) cores; wrk -t2 -c$conns -d${secs}s --latency"
for target in "GET /healthz (baseline)|$base/healthz|" "GET /api/bots|$base/api/bots|-H|$auth"; do
  IFS='|' read -r name url h1 h2 <<<"$target"
  echo "## $name"
  if [ -n "$h1" ]; then wrk -t2 -c"$conns" -d"${secs}s" --latency "$h1" "$h2" "$url"; else wrk -t2 -c"$conns" -d"${secs}s" --latency "$url"; fi \
    | grep -E 'Requests/sec|^ +(50|99)%'
done
echo "## POST /api/conversations/{id}/messages (one conversation: every message goes through one actor)"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$post" "$base" | grep -E 'Requests/sec|^ +(50|99)%|Non-2xx'
