#!/usr/bin/env bash
# Ensures Debian's Prometheus Alertmanager and promtool (packages
# prometheus-alertmanager and prometheus) for the tests, then runs CMD:
#
#   scripts/prometheus.sh run CMD...
#
# The tests start Alertmanager themselves (internal/reconcile
# TestAlertmanager_*) and check the rules with promtool (deploy/prometheus).
# Installing the prometheus package does not start its daemon here: the
# tests never need it running.
set -euo pipefail
log() { printf 'prometheus.sh: %s\n' "$*" >&2; }
if ! command -v prometheus-alertmanager >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  log "installing Debian's prometheus-alertmanager and prometheus (promtool)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq prometheus-alertmanager prometheus >&2
  # Debian's packages start their services where a service manager runs;
  # the tests start their own.
  pkill -x prometheus-alertmanager 2>/dev/null || true
  pkill -x prometheus 2>/dev/null || true
fi
case "${1:-}" in
  run) shift; exec "$@" ;;
  *) echo "usage: scripts/prometheus.sh run CMD..." >&2; exit 2 ;;
esac
