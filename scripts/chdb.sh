#!/usr/bin/env bash
# Ensures ClickHouse 26.7 in process (chDB) for the modern-ClickHouse check.
#
#   scripts/chdb.sh run CMD...   install libchdb.so if missing, run CMD with
#                                CHDB_LIB_PATH set and TZ=UTC
#   scripts/chdb.sh path         install if missing, print the library's path
#
# The library comes from the npm package @chdb/lib-linux-x64-gnu (a 178 MB
# download, a 566 MB libchdb.so), installed under .tmp/chdb. A library already
# at $CHDB_LIB_PATH is used as it is.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.tmp/chdb"
version=26.7.3-stable.1
lib="$dir/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"

log() { printf 'chdb.sh: %s\n' "$*" >&2; }

install() {
  if [ -n "${CHDB_LIB_PATH:-}" ] && [ -f "$CHDB_LIB_PATH" ]; then
    echo "$CHDB_LIB_PATH"
    return 0
  fi
  if [ ! -f "$lib" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      log "npm not found; installing Debian's npm"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2 && apt-get install -y -qq npm >&2
    fi
    log "installing @chdb/lib-linux-x64-gnu@$version into $dir"
    mkdir -p "$dir"
    npm install --silent --no-audit --no-fund --prefix "$dir" "@chdb/lib-linux-x64-gnu@$version" >&2
  fi
  [ -f "$lib" ] || { log "libchdb.so not found after install"; return 1; }
  echo "$lib"
}

case "${1:-}" in
  path) install ;;
  run)
    shift
    path=$(install)
    CHDB_LIB_PATH=$path TZ=UTC "$@"
    ;;
  *) echo "usage: $0 run CMD...|path" >&2; exit 2 ;;
esac
