#!/usr/bin/env bash
# Stripe webhook throughput: a release `parla serve` on a fresh data dir, N signed subscription
# events posted by C threads (scripts/bench-webhooks.py, signed with Stripe's own Python
# library); prints events accepted/s (stored durably, then 200) and applied/s.
# Usage: scripts/bench-webhooks.sh [N] [C]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
n="${1:-2000}"
c="${2:-8}"
python=$(scripts/python-env.sh)
bin="${PARLA_BIN:-$CARGO_TARGET_DIR/release/parla}"
[ -n "${PARLA_BIN:-}" ] || cargo build --release --locked -p parla >&2
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
secret=whsec_bench
PARLA__BILLING__STRIPE_SECRET_KEY=sk_test_bench PARLA__BILLING__STRIPE_API_BASE=http://127.0.0.1:9 \
PARLA__BILLING__STRIPE_WEBHOOK_SECRETS="[\"$secret\"]" PARLA__AUTH__IP_REQUESTS_PER_15MIN=100000 \
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
"$python" scripts/bench-webhooks.py "http://127.0.0.1:$port" "$secret" "$n" "$c"
