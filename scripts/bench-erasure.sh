#!/usr/bin/env bash
# Data-subject requests on the embedded store, timed, with a chat load running: one person with
# N widget conversations (each a message and a form giving their email) among F filler ones;
# find, export (zip) and erase (through the actors, then the store file compacted) are timed,
# and the chat load's latency is read from two runs of the same length on the same server —
# one without and one with the erasure in its middle.
#
#   scripts/bench-erasure.sh [N=1000] [F=5000] [chat secs=20]
# Needs a release build (cargo build --release -p parla -p parla-loadtest).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}; F=${2:-5000}; SECS=${3:-20}
TARGET=${CARGO_TARGET_DIR:-/var/tmp/parla-target}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
PARLA__SERVER__OPS_LISTEN=127.0.0.1:0 PARLA__EMBEDDINGS__LOCAL_MODEL= PARLA__RESPONDER__TOKEN_DELAY_MS=0 \
  PARLA__GATEWAY__MAX_SOCKETS_PER_IP=1000000 PARLA__GATEWAY__HELLOS_PER_IP_PER_MINUTE=1000000 \
  PARLA__GATEWAY__HELLO_BURST_PER_IP=1000000 PARLA__GATEWAY__NEW_CONVERSATIONS_PER_BOT_PER_MINUTE=1000000 \
  PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_BOT=1000000 PARLA__GATEWAY__NEW_CONVERSATIONS_PER_IP_PER_MINUTE=1000000 \
  PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_IP=1000000 PARLA__AUTH__IP_REQUESTS_PER_15MIN=1000000 RUST_LOG=info \
  "$TARGET/release/parla" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/parla.out" 2>"$work/parla.log" &
parla=$!
for _ in $(seq 100); do grep -q "listening on" "$work/parla.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/parla.out" | head -1)
echo "parla at $url (pid $parla), data in $work/data"
BENCH_GO="$work/go" node scripts/bench-erasure.mjs "$url" "$N" "$F" >"$work/bench.out" &
bench=$!
until grep -q seeded "$work/bench.out" 2>/dev/null; do sleep 1; done
echo "seeded; store file $(du -h "$work/data/parla.redb" | cut -f1)"
chat() { # OUT: a chat load of SECS seconds on the running server
  "$TARGET/release/parla-loadtest" --targets parla --scenario chat --parla-url "${url/http/ws}/v1/widget/ws" \
    --parla-pid "$parla" -n 100 --interval-ms 200 --duration "$SECS" --out "$1" >/dev/null
}
chat "$work/baseline"
( sleep $((SECS / 2)); touch "$work/go" ) &
chat "$work/during"
wait "$bench"
echo "requests: $(tail -1 "$work/bench.out")"
echo "compaction: $(grep -o 'store file compacted.*' "$work/parla.log" | tail -1)"
echo "store file after: $(du -h "$work/data/parla.redb" | cut -f1)"
for run in baseline during; do
  python3 - "$work/$run/report.json" "$run" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
lat = run["latency_ms"]
print(f"  {sys.argv[2]:8} ok={run['ok']} lost={run['lost']} confirmed/s={run['throughput']['confirmed_per_s']:.0f} "
      f"echo p50={lat['echo']['p50_ms']:.1f} p99={lat['echo']['p99_ms']:.1f} max={lat['echo']['max_ms']:.1f} ms; "
      f"first token p99={lat['first_token']['p99_ms']:.1f} max={lat['first_token']['max_ms']:.1f} ms")
PY
done
