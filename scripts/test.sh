#!/usr/bin/env bash
# Runs Parla's whole test suite on a fresh machine: checks the toolchain, then formatting,
# clippy (warnings are errors) and every test. Services the tests need are started here, once
# for the whole suite (today: none — the embedded store, bus and responder run in-process).
#
# The cargo target directory lives outside the clone (CARGO_TARGET_DIR, default
# /var/tmp/parla-target) so that later runs on the same machine start warm.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup (https://rustup.rs), then rerun." >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked 2>&1 | tee "${CARGO_TARGET_DIR}/last-test.log"

passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "${CARGO_TARGET_DIR}/last-test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "${CARGO_TARGET_DIR}/last-test.log" | awk '{s+=$1} END {print s+0}')
echo
echo "${passed} passed, ${failed} failed"
