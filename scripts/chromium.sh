#!/usr/bin/env bash
# Ensures Debian's chromium for the console's browser tests (chromedp).
#
#   scripts/chromium.sh run CMD...   install chromium if missing, run CMD with
#                                    CHROMIUM set to its path
#   scripts/chromium.sh path         install if missing, print its path
set -euo pipefail

log() { printf 'chromium.sh: %s\n' "$*" >&2; }

install() {
  if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then
    echo "$CHROMIUM"
    return 0
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    log "installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq chromium >&2
  fi
  command -v chromium || { log "chromium not found after install"; return 1; }
}

case "${1:-}" in
  path) install ;;
  run)
    shift
    CHROMIUM=$(install)
    export CHROMIUM
    "$@"
    ;;
  *) echo "usage: $0 path|run CMD..." >&2; exit 2 ;;
esac
