#!/usr/bin/env bash
# The console's figures (BENCHMARKS.md, "Tenant console"): bytes a first visit downloads and
# time to interactive, signed out and signed in, in headless Chromium (Debian's) against
# `parla serve` on localhost, with the hand-written console it replaced as the baseline in the
# same run. Usage: scripts/bench-console.sh [RUNS]   (cold loads per variant, default 20)
# PROFILE=debug uses the debug binary instead of a release build; PARLA_BIN overrides both.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
profile="${PROFILE:-release}"
if [ -z "${PARLA_BIN:-}" ]; then
  if [ "$profile" = release ]; then cargo build --release --locked -p parla >&2; else cargo build --locked -p parla >&2; fi
  PARLA_BIN="$CARGO_TARGET_DIR/$profile/parla"
fi
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >&2
PARLA_BIN="$PARLA_BIN" RUNS="${1:-20}" node widget/bench/console-bench.mjs
