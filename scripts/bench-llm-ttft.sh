#!/usr/bin/env bash
# Time to first token Parla adds on top of the LLM's own. A fake OpenAI-compatible server
# (parla-fake-llm: fixed 200 ms to first token, then 10 tokens 5 ms apart) is measured directly
# (baseline, same run), then through a release `parla serve` whose responder calls it: widget
# `message` → first `token` frame, which adds storing the visitor's message (fsync), retrieval
# and the HTTP hop to the LLM's own time.
# With DOCS=1, the bot has a knowledge base (a Markdown FAQ), so every question is also
# embedded by the built-in model and searched: the cost of retrieval shows.
# TEXT sets what each message says (default: words in no intent and no document).
# Each conversation waits for a reply before it sends again (one message in flight).
# Usage: [DOCS=1] [TEXT=...] scripts/bench-llm-ttft.sh [CONNECTIONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
convs="${1:-10}"; secs="${2:-20}"
cargo build --release --locked -p parla -p parla-loadtest >&2
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d /var/tmp/parla-ttft.XXXXXX)
"$bin/parla-fake-llm" serve --first-token-ms 200 --tokens 10 --token-ms 5 >"$work/llm.log" 2>&1 &
llm=$!
trap 'kill $llm ${parla:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$work/llm.log" && break; sleep 0.1; done
llm_addr=$(sed -n 's/^listening on //p' "$work/llm.log")
echo "# $(date -u +%F) $(nproc) cores; fake LLM: 200 ms to first token"
echo "## baseline (direct): $("$bin/parla-fake-llm" probe --addr "$llm_addr" --requests 200)"
PARLA__LLM__BASE_URL="http://$llm_addr/v1" PARLA__RESPONDER__TOKEN_DELAY_MS=0 RUST_LOG=warn \
  PARLA__GATEWAY__RATE_PER_SECOND=1000000 PARLA__GATEWAY__RATE_BURST=1000000 \
  "$bin/parla" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/serve.log" 2>&1 &
parla=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.log" && break; sleep 0.1; done
addr=$(sed -n 's/^parla: listening on http:\/\///p' "$work/serve.log")
bot=demo
if [ "${DOCS:-0}" = 1 ]; then
  field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
  json() { curl -fsS -H 'content-type: application/json' "$@"; }
  json "http://$addr/api/auth/register" -d '{"email":"b@example.com","password":"a long enough password","name":"B"}' >/dev/null
  token=$(json "http://$addr/api/auth/login" -d '{"email":"b@example.com","password":"a long enough password"}' | field access_token)
  bot=$(json "http://$addr/api/bots" -H "authorization: Bearer $token" -d '{"name":"kb"}' | field id)
  json -X POST "http://$addr/api/bots/$bot/publish" -H "authorization: Bearer $token" >/dev/null
  printf '# Rooms\n\nEvery room has a balcony.\n\n# Breakfast\n\nServed from seven to ten.\n\n# Parking\n\nThe garage is free.\n' >"$work/faq.md"
  curl -fsS "http://$addr/api/bots/$bot/documents/upload" -H "authorization: Bearer $token" -F "file=@$work/faq.md" >/dev/null
  sleep 2
fi
echo "## through Parla ($convs conversations for $secs s, text matching no intent, bot $bot)"
"$bin/parla-loadtest" --parla-url "ws://$addr/v1/widget/ws" --parla-pid "$parla" --targets parla \
  --bot "$bot" --scenario chat --connections "$convs" --duration "$secs" --interval-ms 0 \
  --max-in-flight 1 --text "${TEXT:-xylophone marmalade zebra}"
