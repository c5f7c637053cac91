#!/usr/bin/env bash
# The widget's figures (BENCHMARKS.md, "Widget"): gzipped sizes of the loader and the app,
# script tag to interactive, and token frame to pixels, in headless Chromium (Debian's) against
# `parla serve` (release build) on localhost, with the old minimal page as the baseline in the
# same run. Usage: scripts/bench-widget.sh [RUNS]   (RUNS page loads per variant, default 15)
# PROFILE=debug uses the debug binary instead of a release build (server-side work is slower, so
# the "interactive" figures are then upper bounds).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
profile="${PROFILE:-release}"
if [ "$profile" = release ]; then cargo build --release --locked -p parla >&2; else cargo build --locked -p parla >&2; fi
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >&2
PARLA_BIN="$CARGO_TARGET_DIR/$profile/parla" RUNS="${1:-15}" node widget/bench/bench.mjs
