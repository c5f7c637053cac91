#!/usr/bin/env bash
# Distributed mode beside the embedded one, in the same run: starts Redis, Kafka and Cassandra
# (scripts/services.sh), applies the CQL schema into a fresh keyspace, starts a gateway and
# ENGINES engine nodes (release builds), and runs the load generator against the gateway; then
# starts `parla serve` on the embedded store and runs the same load against it. The harness
# (parla-loadtest) reads the servers' memory and CPU from their pids (summed over the cluster).
# Usage: scripts/bench-cluster.sh [CONNECTIONS] [SECONDS] [ENGINES]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-env.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/parla-target}"
connections="${1:-50}"
seconds="${2:-20}"
engines="${3:-1}"

cargo build --release --locked -p parla -p parla-loadtest >&2
eval "$(scripts/services.sh start)"
bin="$CARGO_TARGET_DIR/release/parla"
work=$(mktemp -d /var/tmp/parla-bench-cluster.XXXXXX)
# start() runs in a command substitution (a subshell): it leaves each pid in $work/NAME.pid.
cleanup() {
  for f in "$work"/*.pid; do
    if [ -e "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

run=$(head -c 5 /dev/urandom | od -An -tx1 | tr -d ' \n')
export PARLA__RESPONDER__TOKEN_DELAY_MS=0
export PARLA__GATEWAY__RATE_PER_SECOND=1000000
export PARLA__GATEWAY__RATE_BURST=1000000
export PARLA__ENGINE__MAX_LIVE_CONVERSATIONS_PER_TENANT=1000000
export RUST_LOG=warn

# Starts `parla serve` with the given role and environment; prints its address.
start() {
  local name=$1 role=$2
  shift 2
  mkdir -p "$work/$name"
  env "$@" "$bin" serve --listen 127.0.0.1:0 --role "$role" --data-dir "$work/$name" \
    >"$work/$name.log" 2>&1 &
  echo $! >"$work/$name.pid"
  for _ in $(seq 300); do
    grep -q 'listening on' "$work/$name.log" && break
    sleep 0.1
  done
  local addr
  addr=$(sed -n 's/^parla: listening on http:\/\///p' "$work/$name.log")
  [ -n "$addr" ] || { cat "$work/$name.log" >&2; exit 1; }
  echo "$addr"
}

cluster=(
  PARLA__STORE__BACKEND=cql
  "PARLA__STORE__CQL_NODES=[\"$PARLA_TEST_CQL\"]"
  "PARLA__STORE__CQL_KEYSPACE=parla_bench_$run"
  PARLA__CLUSTER__BUS=kafka
  "PARLA__CLUSTER__KAFKA_BROKERS=$PARLA_TEST_KAFKA"
  "PARLA__CLUSTER__KAFKA_TOPIC_PREFIX=parla-bench-$run"
  "PARLA__CLUSTER__REDIS_URL=$PARLA_TEST_REDIS"
  PARLA__AUTH__JWT_SECRET=bench-secret-bench-secret-bench-secret-32
)
env "${cluster[@]}" "$bin" migrate >&2
gateway=$(start gateway gateway "${cluster[@]}" PARLA__DEMO__ENABLED=true)
for n in $(seq "$engines"); do
  start "engine$n" engine "${cluster[@]}" PARLA__DEMO__ENABLED=false >/dev/null
done
# Let the engines join the consumer group before the load starts.
sleep 8
cluster_pids=$(cat "$work"/gateway.pid "$work"/engine*.pid | paste -sd, -)
load=(--targets parla --scenario chat --connections "$connections" --duration "$seconds"
  --interval-ms 0 --max-in-flight 2)
echo "# distributed: gateway $gateway + $engines engine node(s) on Kafka, Cassandra, Redis"
"$CARGO_TARGET_DIR/release/parla-loadtest" --parla-url "ws://$gateway/v1/widget/ws" \
  --parla-pid "$cluster_pids" "${load[@]}"

embedded=$(start embedded all)
echo "# embedded: parla serve at $embedded, same load"
"$CARGO_TARGET_DIR/release/parla-loadtest" --parla-url "ws://$embedded/v1/widget/ws" \
  --parla-pid "$(cat "$work/embedded.pid")" "${load[@]}"
