#!/usr/bin/env bash
# Server memory per idle visitor: RSS of a release `parla serve` before and after N sockets
# each open a conversation (hello → welcome → the demo greeting) and stay idle. Since issue 19 a
# hello stores nothing and wakes no actor (the conversation is stored by the visitor's first
# message), so this is the cost of a socket with a pending conversation; figures in
# BENCHMARKS.md from before 2026-12-07 include a live actor each.
# Usage: scripts/bench-memory.sh [N]   (one process holds under 20k files here: keep N < 15000)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
n="${1:-2000}"
cargo build --release --locked -p parla -p parla-loadtest >&2
data=$(mktemp -d /var/tmp/parla-mem.XXXXXX)
log="$data/serve.log"
fifo="$data/hold.stdin"
mkfifo "$fifo"
PARLA__ENGINE__MAX_LIVE_CONVERSATIONS_PER_TENANT=1000000 RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/parla" serve --listen 127.0.0.1:0 --data-dir "$data" >"$log" 2>&1 &
pid=$!
trap 'exec 3>&- 2>/dev/null || true; kill $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
addr=$(sed -n 's/^parla: listening on http:\/\///p' "$log")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
sleep 1
before=$(rss)
"$CARGO_TARGET_DIR/release/parla-loadtest" --url "ws://$addr/v1/widget/ws" --hold "$n" <"$fifo" >"$data/hold.out" &
holder=$!
exec 3>"$fifo"
for _ in $(seq 600); do grep -q '^holding' "$data/hold.out" 2>/dev/null && break; sleep 0.2; done
grep -q '^holding' "$data/hold.out" || { echo "the holder did not get all sockets" >&2; exit 1; }
sleep 2
after=$(rss)
ops=$(sed -n 's/^parla: \/readyz and \/metrics on http:\/\///p' "$log")
live=$(curl -s "http://$ops/metrics" 2>/dev/null | awk '/^parla_live_conversations/ {print $2}' || true)
exec 3>&-
wait $holder || true
echo "# $(date -u +%F) $(nproc) cores; $n idle sockets, each with a live conversation (live actors: ${live:-?})"
echo "| sockets | RSS before KiB | RSS after KiB | KiB per socket + conversation |"
echo "|---:|---:|---:|---:|"
echo "| $n | $before | $after | $(( (after - before) / n )) |"
