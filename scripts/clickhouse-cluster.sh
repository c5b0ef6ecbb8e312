#!/usr/bin/env bash
# A replicated ClickHouse cluster on this machine, for the tests and to try
# CLICKHOUSE_CLUSTER: ZooKeeper standalone and two ClickHouse servers on
# loopback, one shard of two replicas (cluster "ottu").
#
#   scripts/clickhouse-cluster.sh run CMD...   start the cluster, run CMD with
#                                              CLICKHOUSE_CLUSTER_ADDRS (both
#                                              nodes), CLICKHOUSE_CLUSTER_NAME
#                                              and CLICKHOUSE_CLUSTER_PIDS set,
#                                              stop what this script started
#   scripts/clickhouse-cluster.sh start        start it, print the node addresses
#   scripts/clickhouse-cluster.sh stop         stop it (ClickHouse first, then ZooKeeper)
#
# Debian's clickhouse-server (18.16) and zookeeper (3.8) are installed with
# apt-get when missing. Ports: ZooKeeper ${OTTU_ZK_PORT:-19181}, the nodes
# ${OTTU_CH_CLUSTER_PORT:-19100} and +100 (native), +1 (HTTP), +2 (interserver).
# Each process is stopped by its PID. Data lives under .tmp/clickhouse-cluster.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.tmp/clickhouse-cluster"
zk_port=${OTTU_ZK_PORT:-19181}
base=${OTTU_CH_CLUSTER_PORT:-19100}
nodes=(1 2)
cluster=ottu

log() { printf 'clickhouse-cluster.sh: %s\n' "$*" >&2; }
# shellcheck source=scripts/clickhouse-config.sh
. "$root/scripts/clickhouse-config.sh"
node_port() { echo $((base + ($1 - 1) * 100)); }

install() {
  local want=()
  command -v clickhouse-server >/dev/null 2>&1 || want+=(clickhouse-server clickhouse-client)
  [ -f /usr/share/java/zookeeper.jar ] || want+=(zookeeper)
  command -v java >/dev/null 2>&1 || want+=(default-jre-headless)
  [ ${#want[@]} -eq 0 ] && return 0
  log "installing ${want[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${want[@]}" >&2
}

# zk_cmd WORD: a ZooKeeper four-letter command, through bash's /dev/tcp.
zk_cmd() {
  exec 3<>"/dev/tcp/127.0.0.1/$zk_port" 2>/dev/null || return 1
  printf '%s' "$1" >&3
  timeout 2 cat <&3 || true
  exec 3<&- 3>&-
}

start_zookeeper() {
  local pidfile="$dir/zookeeper.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && zk_cmd srvr | grep -q 'Mode: standalone'; then
    return 0
  fi
  mkdir -p "$dir/zookeeper/data"
  cat >"$dir/zookeeper/zoo.cfg" <<CFG
dataDir=$dir/zookeeper/data
clientPort=$zk_port
clientPortAddress=127.0.0.1
tickTime=2000
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat
CFG
  # Standalone: no server.N lines (else it waits for a quorum and serves nothing).
  java -Xmx256m -Dzookeeper.log.dir="$dir/zookeeper" \
    -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar \
    org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zookeeper/zoo.cfg" >"$dir/zookeeper/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do # ready means serving, not only listening
    if zk_cmd srvr 2>/dev/null | grep -q 'Mode: standalone'; then
      return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.2
  done
  log "ZooKeeper is not serving on 127.0.0.1:$zk_port; its log:"
  tail -n 30 "$dir/zookeeper/stdout.log" >&2 || true
  return 1
}

write_node_config() { # N
  local n=$1 port
  port=$(node_port "$1")
  ch_write_config "$dir/node$n" debug "$port" "$((port + 1))" 2000000000 "
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>$((port + 2))</interserver_http_port>
  <zookeeper>
    <node><host>127.0.0.1</host><port>$zk_port</port></node>
    <session_timeout_ms>30000</session_timeout_ms>
    <operation_timeout_ms>10000</operation_timeout_ms>
  </zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <!-- A node killed mid-insert starts again: its parts that ZooKeeper never
       recorded (inserts that were not acknowledged) are detached, whatever
       their share of a small table, and the data comes from the other replica. -->
  <merge_tree><replicated_max_ratio_of_wrong_parts>1</replicated_max_ratio_of_wrong_parts></merge_tree>
  <macros><shard>1</shard><replica>node$n</replica></macros>
  <remote_servers>
    <$cluster>
      <shard>
        <internal_replication>true</internal_replication>
        <replica><host>127.0.0.1</host><port>$(node_port 1)</port></replica>
        <replica><host>127.0.0.1</host><port>$(node_port 2)</port></replica>
      </shard>
    </$cluster>
  </remote_servers>"
}

q() { clickhouse-client --host 127.0.0.1 --port "$1" --query "$2" 2>/dev/null; }

# launch_node N: start its server in the background, recording its PID.
launch_node() {
  local d="$dir/node$1"
  write_node_config "$1"
  if [ -f "$d/log/clickhouse-server.log" ]; then wc -c <"$d/log/clickhouse-server.log"; else echo 0; fi >"$d/log.offset"
  clickhouse-server --config-file="$d/config.xml" >"$d/log/stdout.log" 2>&1 &
  echo $! >"$dir/node$1.pid"
}

# start_node N: start it (if not running) and wait until it answers, talks
# to ZooKeeper, and its DDL worker processes tasks (an ON CLUSTER query sent
# before that crashes 18.16). A node killed a moment ago may still hold its
# files and ports: a start that exits at once is tried again, a few times.
start_node() {
  local n=$1 d="$dir/node$1" port pidfile="$dir/node$1.pid" launches=0
  port=$(node_port "$n")
  if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
    launch_node "$n"
    launches=1
  fi
  local offset
  offset=$(cat "$d/log.offset" 2>/dev/null || echo 0)
  for _ in $(seq 1 300); do
    # A node already running has its DDL worker going; one launched here must
    # say so in its log (since its start).
    if q "$port" "SELECT 1" >/dev/null && q "$port" "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null &&
      { [ "$launches" -eq 0 ] || { tail -c +"$((offset + 1))" "$d/log/clickhouse-server.log" 2>/dev/null || true; } | grep -q 'DDLWorker: Processing tasks'; }; then
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      if [ "$launches" -lt 5 ]; then
        sleep 1
        launch_node "$n"
        launches=$((launches + 1))
        offset=$(cat "$d/log.offset")
        continue
      fi
      log "node$n exited; its log:"
      tail -n 30 "$d/log/stdout.log" "$d/log/clickhouse-server.err.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
  log "node$n not ready within 60s"
  tail -n 30 "$d/log/clickhouse-server.err.log" >&2 2>/dev/null || true
  return 1
}

addrs() {
  local out=()
  for n in "${nodes[@]}"; do out+=("127.0.0.1:$(node_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

pids() {
  local out=()
  for n in "${nodes[@]}"; do out+=("$(cat "$dir/node$n.pid")"); done
  (IFS=,; echo "${out[*]}")
}

start() {
  install
  mkdir -p "$dir"
  start_zookeeper
  for n in "${nodes[@]}"; do start_node "$n"; done
  addrs
}

stop_pid() { # PIDFILE
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

stop() {
  for n in "${nodes[@]}"; do stop_pid "$dir/node$n.pid"; done
  stop_pid "$dir/zookeeper.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  start-node) start_node "$2" ;; # restart one node the tests stopped
  run)
    shift
    started_here=true
    [ -f "$dir/zookeeper.pid" ] && kill -0 "$(cat "$dir/zookeeper.pid")" 2>/dev/null && started_here=false
    addr=$(start)
    if $started_here; then trap stop EXIT; fi
    # Tests that use the cluster take CLICKHOUSE_CLUSTER_LOCK (flock) for
    # their duration: one kills a node, which others' ON CLUSTER DDL must not meet.
    CLICKHOUSE_CLUSTER_ADDRS=$addr CLICKHOUSE_CLUSTER_NAME=$cluster CLICKHOUSE_CLUSTER_PIDS=$(pids) \
      CLICKHOUSE_CLUSTER_SCRIPT="$root/scripts/clickhouse-cluster.sh" CLICKHOUSE_CLUSTER_LOCK="$dir/tests.lock" "$@"
    ;;
  *) echo "usage: $0 start|stop|run CMD..." >&2; exit 2 ;;
esac
