#!/usr/bin/env bash
# Fuzzes the admin API with schemathesis (PyPI), driven by the OpenAPI document the server
# itself serves at /api/openapi.json, against the real binary on a free port with a fresh data
# directory. Passes when no response is a 5xx and every response conforms to the document
# (status code, content type, headers, body schema), and schema-invalid input is refused.
#
# Usage: PARLA_BIN=path/to/parla tests/schemathesis/run.sh [extra schemathesis options]
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${PARLA_BIN:?set PARLA_BIN to the parla binary}"

python=$(scripts/python-env.sh)
venv=$(dirname "$(dirname "$python")")

work=$(mktemp -d)
# Billing talks to Stripe's own mock (which refuses any request its spec does not allow): the
# billing and marketplace endpoints answer as they would with Stripe configured.
mock=${PARLA_TEST_STRIPE_MOCK:-$(scripts/stripe-mock.sh)}
mock_port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mock_tls=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$mock" -http-port "$mock_port" -https-port "$mock_tls" >"$work/stripe-mock.log" 2>&1 &
mock_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$mock_port") 2>/dev/null && break
  sleep 0.1
done
PARLA__BILLING__STRIPE_SECRET_KEY=sk_test_fuzz PARLA__BILLING__STRIPE_API_BASE="http://127.0.0.1:$mock_port" \
PARLA__SERVER__OPS_LISTEN=127.0.0.1:0 "$PARLA_BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/parla.log" 2>&1 &
server=$!
cleanup() {
  kill "$mock_pid" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
base=""
for _ in $(seq 1 100); do
  base=$(sed -n 's/^parla: listening on \(http:[^ ]*\).*/\1/p' "$work/parla.log")
  [ -n "$base" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/parla.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { echo "parla did not start" >&2; cat "$work/parla.log" >&2; exit 1; }

# An owner with a published bot, so authenticated operations get past authentication.
json() { "$venv/bin/python" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
curl -fsS -X POST "$base/api/auth/register" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","password":"correct horse battery staple","name":"Fuzz"}' >/dev/null
token=$(curl -fsS -X POST "$base/api/auth/login" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","password":"correct horse battery staple"}' | json "['access_token']")
bot=$(curl -fsS -X POST "$base/api/bots" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -d '{"name":"Fuzzed"}' | json "['id']")
curl -fsS -X POST "$base/api/bots/$bot/publish" -H "authorization: Bearer $token" >/dev/null

# Its caches (.hypothesis, reports) go to the scratch directory, not the clone.
# One worker: with two threads, hypothesis parses sources with `ast` concurrently and CPython 3.11
# (this machine's) can fail that with "SystemError: AST constructor recursion depth mismatch"
# (CPython gh-106905, not fixed in 3.11): a tool error that reddened a run once. One thread
# costs ~40 s here, as two did.
cd "$work"
"$venv/bin/schemathesis" run "$base/api/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
  --header "Authorization: Bearer $token" \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
  --seed "${SCHEMATHESIS_SEED:-20261125}" \
  --workers 1 \
  --no-color \
  "$@"
