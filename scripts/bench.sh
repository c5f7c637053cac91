#!/usr/bin/env bash
# End-to-end benchmark: the load harness (parla-loadtest, loadtest/src/main.rs) starts a release
# `parla serve` on a fresh data dir (durable store, no token pacing, rate limits lifted) and
# the raw WebSocket baseline, and runs the same chat load against both in one invocation:
# every conversation keeps up to 2 messages in flight, so this measures the most confirmed
# messages per second, with every frame checked. Exits nonzero if any frame was lost.
# Usage: scripts/bench.sh [CONNECTIONS] [SECONDS]   (scripts/bench-scale.sh: every scenario)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
connections="${1:-50}"
seconds="${2:-20}"

cargo build --release --locked -p parla -p parla-loadtest >&2
"$CARGO_TARGET_DIR/release/parla-loadtest" --parla-bin "$CARGO_TARGET_DIR/release/parla" \
  --targets parla,raw --scenario chat --connections "$connections" --duration "$seconds" \
  --interval-ms 0 --max-in-flight 2
