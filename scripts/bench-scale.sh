#!/usr/bin/env bash
# Parla at scale beside two baselines — a raw tokio-tungstenite WebSocket server (the
# transport's limit) and a Socket.IO server (in memory, no persistence) — with the same clients
# in the same invocation (parla-loadtest, loadtest/src/main.rs), every frame checked:
#
#   1. idle       IDLE_N connections held: memory per connection, connect rate and latency;
#   2. chat-max   CHAT_N conversations in a closed loop (each keeps 2 messages in flight):
#                 the most confirmed messages per second;
#   3. chat-half  the same at half of Parla's maximum: latencies (p99 first token) below
#                 saturation;
#   4. burst      every conversation sends at the same instant, 5 rounds: time to drain;
#   5. reconnect  chat at half rate, 20% of the sockets dropped and resumed: zero loss.
#
# Each step writes report.json, latency.svg and the server logs under OUT/<step>; the script
# exits nonzero if any step failed (a lost, duplicated or reordered frame fails a run).
# One process may hold at most 20,000 open files here: the harness spreads its sockets over
# worker processes, but each server is one process, so IDLE_N above ~19,000 makes the servers
# fail with EMFILE (reported as such).
# Usage: [IDLE_N=15000] [CHAT_N=5000] [DURATION=30] [OUT=dir] scripts/bench-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
idle_n="${IDLE_N:-15000}"
chat_n="${CHAT_N:-5000}"
duration="${DURATION:-30}"
out="${OUT:-/var/tmp/parla-bench-scale.$(date -u +%Y%m%dT%H%M%SZ)}"

cargo build --release --locked -p parla -p parla-loadtest >&2
npm ci --prefix loadtest/socketio --no-audit --no-fund --loglevel=error >&2
mkdir -p "$out"

targets=parla,raw,socketio
lt=("$CARGO_TARGET_DIR/release/parla-loadtest" --parla-bin "$CARGO_TARGET_DIR/release/parla"
  --targets "$targets")
status=0
step() { # NAME ARGS...: one harness run into $out/NAME; a failure is remembered, not fatal
  local name=$1
  shift
  echo "## $name" >&2
  "${lt[@]}" --out "$out/$name" "$@" | tee "$out/$name.md" || status=1
}

step idle --scenario idle --connections "$idle_n" --ramp 2000 --idle-secs "$duration"
step chat-max --scenario chat --connections "$chat_n" --ramp 2000 --duration "$duration" \
  --interval-ms 0 --max-in-flight 2
max=$(node -p "(require('$out/chat-max/report.json').runs.find(r => r.target === 'parla') || {throughput: {confirmed_per_s: 0}}).throughput.confirmed_per_s")
half=$(node -p "Math.max(1, Math.round($max / 2))")
echo "## Parla's maximum: $max confirmed messages/s; half: $half/s" >&2
step chat-half --scenario chat --connections "$chat_n" --ramp 2000 --duration "$duration" \
  --rate "$half"
step burst --scenario burst --connections "$chat_n" --ramp 2000 --rounds 5
step reconnect --scenario reconnect --connections "$chat_n" --ramp 2000 --duration "$duration" \
  --rate "$half"
echo "reports in $out" >&2
exit "$status"
