#!/usr/bin/env bash
# Ensures a ClickHouse server for the tests and the demo, and stops it after.
#
#   scripts/clickhouse.sh run CMD...   ensure a server, run CMD with CLICKHOUSE_ADDR
#                                      set, stop the server if this script started it
#   scripts/clickhouse.sh start        ensure a server, print its address
#   scripts/clickhouse.sh stop         stop the server this project started
#
# A server already reachable at $CLICKHOUSE_ADDR is used as it is. Otherwise
# Debian's clickhouse-server is installed (apt-get) if missing and started with
# the project's own config and data directory under .tmp/clickhouse, listening
# on 127.0.0.1:${OTTU_CH_PORT:-19000} only.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.tmp/clickhouse"
port=${OTTU_CH_PORT:-19000}
http_port=$((port + 1))
pidfile="$dir/clickhouse.pid"

log() { printf 'clickhouse.sh: %s\n' "$*" >&2; }
# shellcheck source=scripts/clickhouse-config.sh
. "$root/scripts/clickhouse-config.sh"

reachable() { # host:port
  local host=${1%:*} p=${1##*:}
  (exec 3<>"/dev/tcp/$host/$p") 2>/dev/null
}

answers() { # host:port: the native protocol answers a query
  if command -v clickhouse-client >/dev/null 2>&1; then
    clickhouse-client --host "${1%:*}" --port "${1##*:}" --query 'SELECT 1' >/dev/null 2>&1
  else
    reachable "$1"
  fi
}

install_server() {
  command -v clickhouse-server >/dev/null 2>&1 && return 0
  log "clickhouse-server not installed; installing Debian's package"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq clickhouse-server clickhouse-client >&2
}

write_config() {
  ch_write_config "$dir" warning "$port" "$http_port" 4000000000
}

start() {
  if [ -n "${CLICKHOUSE_ADDR:-}" ] && answers "${CLICKHOUSE_ADDR%%,*}"; then
    echo "${CLICKHOUSE_ADDR%%,*}"
    return 0
  fi
  local addr="127.0.0.1:$port"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers "$addr"; then
    echo "$addr"
    return 0
  fi
  install_server
  write_config
  log "starting clickhouse-server on $addr (data in $dir)"
  clickhouse-server --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 300); do
    if answers "$addr"; then
      echo "$addr"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "clickhouse-server exited; its log:"
      tail -n 30 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
  log "clickhouse-server did not answer on $addr within 60s"
  return 1
}

stop() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  run)
    shift
    started_here=false
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null || started_here=true
    if [ -n "${CLICKHOUSE_ADDR:-}" ] && answers "${CLICKHOUSE_ADDR%%,*}"; then started_here=false; fi
    addr=$(start)
    if $started_here; then trap stop EXIT; fi
    # The HTTP interface (the modern-ClickHouse check reads 18.16's answers
    # in the same text formats as chDB's); known for the server started here.
    http_addr=${CLICKHOUSE_HTTP_ADDR:-}
    if [ -z "$http_addr" ] && [ "$addr" = "127.0.0.1:$port" ]; then http_addr="127.0.0.1:$http_port"; fi
    CLICKHOUSE_ADDR=$addr CLICKHOUSE_HTTP_ADDR=$http_addr "$@"
    ;;
  *) echo "usage: $0 start|stop|run CMD..." >&2; exit 2 ;;
esac
