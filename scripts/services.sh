#!/usr/bin/env bash
# Installs (if missing), starts, checks and stops the real servers that Parla's distributed-mode
# tests use, all on loopback and all under /var/tmp/parla-services (PARLA_SERVICES_DIR):
#
#   redis      Debian's redis-server               redis://127.0.0.1:16379
#   kafka      Apache Kafka 4.1 (KRaft, one node)   127.0.0.1:19092 (controller 19093)
#   cassandra  Apache Cassandra 5.0 (one node)      CQL 127.0.0.1:19042 (storage 17000, JMX 17199)
#
# Usage:
#   eval "$(scripts/services.sh start [redis|kafka|cassandra ...])"   # default: all three
#   scripts/services.sh stop [redis|kafka|cassandra ...]
#   scripts/services.sh status [redis|kafka|cassandra ...]
#
# `start` prints only `export PARLA_TEST_…=…` lines on stdout, one per service that answers a
# real client; progress and errors go to stderr. A service already answering on its port is left
# as it is. A service that fails is reported and gets no export line, the others still start;
# the exit code is 1 if any requested service is not up. Servers started here run detached
# (setsid) and survive this script; `stop` ends them through their pid files.
#
# Kafka and Cassandra come from Maven Central as jars (poms in scripts/services/), the readiness
# checks use Python clients from PyPI (scripts/services/requirements.txt) in a venv. Jars, venv
# and Maven's repository are cached under the services dir, so only the first start downloads;
# every fresh start wipes the data directories (tests create their own keyspaces and topics).
set -euo pipefail

SELF=$(readlink -f "$0")
CONF=$(dirname "$SELF")/services
ROOT=${PARLA_SERVICES_DIR:-/var/tmp/parla-services}
ALL=(redis kafka cassandra)

REDIS_PORT=16379
KAFKA_PORT=19092
CQL_PORT=19042

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  log "apt-get install $*"
  as_root apt-get update -qq </dev/null >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 \
    --no-install-recommends "$@" </dev/null >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid in $ROOT/<svc>/pid if that process is alive and really is our server (a stale pid
# file may name a recycled pid after a reboot).
our_pid() {
  local svc=$1 pid marker
  pid=$(cat "$ROOT/$svc/pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  case $svc in
    redis) marker="redis-server" ;;
    *) marker="$ROOT/$svc/" ;;
  esac
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  echo "$pid"
}

svc_port() {
  case $1 in redis) echo $REDIS_PORT ;; kafka) echo $KAFKA_PORT ;; cassandra) echo $CQL_PORT ;; esac
}

export_line() {
  case $1 in
    redis) echo "export PARLA_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT" ;;
    kafka) echo "export PARLA_TEST_KAFKA=127.0.0.1:$KAFKA_PORT" ;;
    cassandra) echo "export PARLA_TEST_CQL=127.0.0.1:$CQL_PORT" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Installation (each step is idempotent and cheap when already done)

# Cassandra 5.0 runs on Java 11 or 17 only (not 21+), Kafka 4 needs 17+: both get a Java 17,
# whatever JAVA_HOME or `java` on PATH happen to be.
java17() {
  local j
  for j in "${JAVA_HOME:-/nonexistent}/bin/java" "$(command -v java || true)" \
    /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/temurin-17-*/bin/java; do
    [ -x "$j" ] || continue
    if "$j" -XshowSettings:properties -version 2>&1 | grep -q 'java.specification.version = 17$'; then
      echo "$j"
      return 0
    fi
  done
  return 1
}

ensure_java17() {
  java17 >/dev/null || apt_install openjdk-17-jre-headless
  java17 >/dev/null || die "no Java 17 found after installing openjdk-17-jre-headless"
}

ensure_maven() {
  command -v mvn >/dev/null || apt_install maven
}

# Copies the runtime jars of scripts/services/<svc>-pom.xml into $ROOT/<svc>/lib, again only
# when the pom changed since the last copy.
ensure_jars() {
  local svc=$1 pom="$CONF/$1-pom.xml" lib="$ROOT/$1/lib"
  if [ -f "$lib/pom.xml" ] && cmp -s "$pom" "$lib/pom.xml"; then
    return 0
  fi
  ensure_maven
  log "$svc: fetching jars from Maven Central ($pom)"
  rm -rf "$lib.new"
  if ! mvn -B -f "$pom" -Dmaven.repo.local="$ROOT/m2" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib.new" >"$ROOT/$svc/maven.log" 2>&1; then
    tail -n 30 "$ROOT/$svc/maven.log" >&2
    die "$svc: Maven could not fetch the jars (whole output: $ROOT/$svc/maven.log)"
  fi
  cp "$pom" "$lib.new/pom.xml"
  rm -rf "$lib"
  mv "$lib.new" "$lib"
}

ensure_venv() {
  local venv="$ROOT/venv" req="$CONF/requirements.txt"
  if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/requirements.txt"; then
    return 0
  fi
  log "Python clients for the readiness checks: $req -> $venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$venv" >&2
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$venv/requirements.txt"
}

install_svc() {
  mkdir -p "$ROOT/$1"
  case $1 in
    redis)
      if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        apt_install redis-server
      fi
      ;;
    kafka | cassandra)
      ensure_java17
      ensure_jars "$1"
      ensure_venv
      ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Start and readiness

# Waits until $port accepts connections while $pid lives.
wait_port() {
  local svc=$1 pid=$2 port=$3 timeout=$4 end=$((SECONDS + $4))
  while ((SECONDS < end)); do
    port_open "$port" && return 0
    kill -0 "$pid" 2>/dev/null || {
      log "$svc: the server (pid $pid) exited during start-up"
      return 1
    }
    sleep 0.5
  done
  log "$svc: nothing listens on port $port after ${timeout} s"
  return 1
}

# Starts a JVM server detached from this script (own session, no inherited stdio, so that
# `$(scripts/services.sh start)` returns and a Ctrl-C of the caller leaves it running).
launch_java() {
  local svc=$1
  shift
  setsid "$(java17)" "$@" </dev/null >>"$ROOT/$svc/log" 2>&1 &
  echo $! >"$ROOT/$svc/pid"
}

redis_ping() { [ "$(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null)" = PONG ]; }

start_redis() {
  local dir="$ROOT/redis" end
  if redis_ping; then
    log "redis: already answering on $REDIS_PORT"
    return 0
  fi
  if ! our_pid redis >/dev/null; then
    rm -rf "$dir/data" "$dir/log"
    mkdir -p "$dir/data"
    # Not the Debian service: our own instance, in memory only.
    redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize yes --pidfile "$dir/pid" --logfile "$dir/log" --dir "$dir/data" \
      </dev/null >/dev/null 2>&1
  fi
  end=$((SECONDS + 20))
  until redis_ping; do
    ((SECONDS < end)) || {
      log "redis: no PONG after 20 s"
      return 1
    }
    sleep 0.2
  done
}

start_kafka() {
  local dir="$ROOT/kafka" pid
  local cp="$dir/lib/*"
  local jvm=(-Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$CONF/kafka-log4j2.xml")
  if port_open $KAFKA_PORT; then
    log "kafka: something listens on $KAFKA_PORT already; checking it"
  else
    if ! pid=$(our_pid kafka); then
      rm -rf "$dir/data" "$dir/log"
      mkdir -p "$dir/data"
      sed "s#@DATA_DIR@#$dir/data#" "$CONF/kafka.properties" >"$dir/server.properties"
      # KRaft needs formatted storage with a cluster id (22 chars of URL-safe base64).
      local cluster_id
      # 16 random bytes, URL-safe base64 without padding (what kafka-storage random-uuid prints),
      # with coreutils alone: no Python needed before the test tools are installed.
      cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
      "$(java17)" "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$dir/server.properties" >>"$dir/log" 2>&1 || {
        log "kafka: formatting the storage failed"
        return 1
      }
      launch_java kafka "${jvm[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties"
      pid=$(cat "$dir/pid")
    fi
    wait_port kafka "$pid" $KAFKA_PORT 120 || return 1
  fi
  local info
  info=$("$ROOT/venv/bin/python" "$CONF/kafka_check.py" "127.0.0.1:$KAFKA_PORT" 60) || return 1
  log "kafka: topic created, message produced and consumed ($info)"
}

start_cassandra() {
  local dir="$ROOT/cassandra" pid
  if port_open $CQL_PORT; then
    log "cassandra: something listens on $CQL_PORT already; checking it"
  else
    if ! pid=$(our_pid cassandra); then
      rm -rf "$dir/data" "$dir/log"
      mkdir -p "$dir/data/triggers"
      sed "s#@DIR@#$dir/data#g" "$CONF/cassandra.yaml" >"$dir/cassandra.yaml"
      local opts jamm
      mapfile -t opts < <(grep -E '^-' "$CONF/cassandra-jvm17.options")
      # Cassandra measures object sizes through the jamm agent, as its own launcher does.
      jamm=$(ls "$dir/lib"/jamm-*.jar)
      launch_java cassandra "${opts[@]}" -javaagent:"$jamm" \
        -Dcassandra.config="file://$dir/cassandra.yaml" \
        -Dcassandra.storagedir="$dir/data" \
        -Dcassandra.triggers_dir="$dir/data/triggers" \
        -Dcassandra.jmx.local.port=17199 \
        -Dcassandra-foreground=yes \
        -Dlogback.configurationFile="$CONF/cassandra-logback.xml" \
        -cp "$dir/lib/*" org.apache.cassandra.service.CassandraDaemon
      pid=$(cat "$dir/pid")
    fi
    wait_port cassandra "$pid" $CQL_PORT 240 || return 1
  fi
  local version
  version=$("$ROOT/venv/bin/python" "$CONF/cql_check.py" "127.0.0.1:$CQL_PORT" 60) || return 1
  log "cassandra: $version answers CQL (keyspace, table, write, read, LWT)"
}

# Runs in its own process (see cmd_start), with `set -e` in force: starts one service and, once
# it answers, writes its export line to the file $2.
up_one() {
  local svc=$1 t0=$SECONDS
  # The trap outlives this function's locals: it gets the name itself, not the variable.
  # shellcheck disable=SC2064
  trap "up_failed $svc" EXIT
  "start_$svc"
  trap - EXIT
  log "$svc: ready after $((SECONDS - t0)) s"
  export_line "$svc" >"$2"
}

up_failed() {
  local svc=$1 pid
  log "$svc: FAILED to start; last lines of $ROOT/$svc/log:"
  tail -n 25 "$ROOT/$svc/log" 2>/dev/null | sed "s/^/[$svc log] /" >&2 || true
  # A half-started server of ours would only confuse the next start.
  if pid=$(our_pid "$svc"); then
    kill "$pid" 2>/dev/null || true
  fi
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Commands

# Sets SVCS to the services named (all when none is).
parse_services() {
  local svc
  [ $# -gt 0 ] || set -- "${ALL[@]}"
  for svc in "$@"; do
    case $svc in
      redis | kafka | cassandra) ;;
      *) die "unknown service '$svc' (expected: ${ALL[*]})" ;;
    esac
  done
  SVCS=("$@")
}

cmd_start() {
  local svc rc=0 t0=$SECONDS
  parse_services "$@"
  mkdir -p "$ROOT"
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  # Installs run one after another (apt and Maven do not like company); each in its own
  # process, so that `set -e` holds inside it and one failure does not stop the others.
  declare -A failed=()
  for svc in "${SVCS[@]}"; do
    "$SELF" __install "$svc" || {
      log "$svc: installation FAILED"
      failed[$svc]=1
    }
  done
  # Start-ups run in parallel: Cassandra's boot dominates and the others fit inside it.
  declare -A pids=()
  for svc in "${SVCS[@]}"; do
    [ -z "${failed[$svc]:-}" ] || continue
    "$SELF" __up "$svc" "$out/$svc" >&2 &
    pids[$svc]=$!
  done
  for svc in "${SVCS[@]}"; do
    if [ -n "${pids[$svc]:-}" ] && wait "${pids[$svc]}" && [ -s "$out/$svc" ]; then
      cat "$out/$svc"
    else
      rc=1
    fi
  done
  log "start took $((SECONDS - t0)) s$([ $rc -eq 0 ] || echo '; some services FAILED (see above)')"
  return $rc
}

cmd_stop() {
  local svc pid end
  parse_services "$@"
  declare -A pids=()
  for svc in "${SVCS[@]}"; do
    if pid=$(our_pid "$svc"); then
      log "$svc: stopping pid $pid"
      kill -TERM "$pid"
      pids[$svc]=$pid
    elif port_open "$(svc_port "$svc")"; then
      log "$svc: port $(svc_port "$svc") is served by a process this script did not start; left alone"
    else
      log "$svc: not running"
      rm -f "$ROOT/$svc/pid"
    fi
  done
  # Cassandra drains and Kafka shuts down in a controlled way on SIGTERM; both take seconds.
  end=$((SECONDS + 60))
  for svc in "${!pids[@]}"; do
    pid=${pids[$svc]}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$svc: still running after 60 s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f "$ROOT/$svc/pid"
    log "$svc: stopped"
  done
}

cmd_status() {
  local svc pid port rc=0
  parse_services "$@"
  for svc in "${SVCS[@]}"; do
    port=$(svc_port "$svc")
    if pid=$(our_pid "$svc") && port_open "$port"; then
      echo "$svc: up, pid $pid, 127.0.0.1:$port"
    elif [ -n "${pid:-}" ]; then
      echo "$svc: starting (pid $pid), 127.0.0.1:$port not yet open"
      rc=1
    elif port_open "$port"; then
      echo "$svc: 127.0.0.1:$port open, but not started by this script"
    else
      echo "$svc: down"
      rc=1
    fi
    pid=""
  done
  return $rc
}

case ${1:-} in
  start) shift && cmd_start "$@" ;;
  stop) shift && cmd_stop "$@" ;;
  status) shift && cmd_status "$@" ;;
  # Internal: one service per process, called by cmd_start.
  __install) install_svc "$2" ;;
  __up) up_one "$2" "$3" ;;
  *)
    sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
