#!/usr/bin/env bash
# End-to-end benchmark: starts a release `parla serve` on a fresh data dir (durable store, no
# token pacing, rate limits lifted) and runs the load generator against it and against the raw
# WebSocket baseline in the same invocation. Usage: scripts/bench.sh [CONVERSATIONS] [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
conversations="${1:-50}"
messages="${2:-40}"

cargo build --release --locked -p parla -p parla-loadtest >&2
data=$(mktemp -d /var/tmp/parla-bench.XXXXXX)
log="$data/serve.log"
PARLA__RESPONDER__TOKEN_DELAY_MS=0 \
PARLA__GATEWAY__RATE_PER_SECOND=1000000 \
PARLA__GATEWAY__RATE_BURST=1000000 \
PARLA__ENGINE__MAX_LIVE_CONVERSATIONS_PER_TENANT=1000000 \
RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/parla" serve --listen 127.0.0.1:0 --data-dir "$data" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  grep -q 'listening on' "$log" && break
  sleep 0.1
done
addr=$(sed -n 's/^parla: listening on http:\/\///p' "$log")
[ -n "$addr" ] || { cat "$log" >&2; exit 1; }
echo "# $(date -u +%F) $(nproc) cores; parla at $addr; $conversations conversations x $messages messages"
"$CARGO_TARGET_DIR/release/parla-loadtest" --url "ws://$addr/v1/widget/ws" \
  --conversations "$conversations" --messages "$messages"
