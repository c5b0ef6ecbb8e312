#!/usr/bin/env bash
# The whole system end to end on this machine, no container engine needed:
# build, ensure ClickHouse, start ingest (embedded NATS) and reconcile serve,
# post simulated Ottu traffic with anomalies (and a few payments whose webhooks
# were lost, as if ingest had been down), wait until every webhook is stored,
# run one reconciliation pass (alerts included), ask the simulated Ottu about
# the findings and about the orders no webhook came for, print what was
# recovered, the coverage and the report, stop everything this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/local/go/bin"

PARENTS=${DEMO_PARENTS:-1000}
LOSE=${DEMO_LOSE:-0.01} # share of payments whose webhooks Ottu sent while ingest was down
work=$(mktemp -d "${TMPDIR:-/tmp}/ottu-recon-demo.XXXXXX")
bin="$work/bin"
pids=()
ch_started=false

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if $ch_started; then scripts/clickhouse.sh stop; fi
  if [ $rc -ne 0 ]; then
    echo "demo failed (exit $rc); logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() { # a free loopback port
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

wait_http() { # url seconds
  for _ in $(seq 1 $(($2 * 10))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1 after $2s" >&2
  return 1
}

# chq runs clickhouse-client against the demo's database.
chq() { clickhouse-client --host "${CLICKHOUSE_ADDR%:*}" --port "${CLICKHOUSE_ADDR##*:}" --database "$CLICKHOUSE_DATABASE" "$@"; }

say "building"
mkdir -p "$bin"
go build -o "$bin/" ./cmd/...

say "ensuring ClickHouse"
if [ -z "${CLICKHOUSE_ADDR:-}" ] && ! { [ -f .tmp/clickhouse/clickhouse.pid ] && kill -0 "$(cat .tmp/clickhouse/clickhouse.pid)" 2>/dev/null; }; then
  ch_started=true
fi
CLICKHOUSE_ADDR=$(scripts/clickhouse.sh start)
export CLICKHOUSE_ADDR
export CLICKHOUSE_DATABASE="ottu_recon_demo_$(date +%s)"
echo "ClickHouse at $CLICKHOUSE_ADDR, database $CLICKHOUSE_DATABASE"

KEY="demo-hmac-key-$(date +%s)"
ALERT_KEY="demo-alert-key"
http_port=$(free_port); nats_port=$(free_port); recon_port=$(free_port); alert_port=$(free_port); console_port=$(free_port)
CONSOLE_USERS="$work/console-users"
DEMO_PASSWORD="demo-password-$(date +%s | tail -c 5)"

say "starting ingest (embedded NATS with JetStream) on 127.0.0.1:$http_port"
env OTTU_HMAC_KEYS="$KEY" INGEST_LISTEN="127.0.0.1:$http_port" NATS_EMBEDDED=true \
  NATS_LISTEN="127.0.0.1:$nats_port" NATS_STORE_DIR="$work/nats" INGEST_SPOOL_DIR="$work/spool" LOG_LEVEL=warn \
  "$bin/ingest" >"$work/ingest.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$http_port/readyz" 30

say "starting an alert receiver on 127.0.0.1:$alert_port"
env ALERT_HMAC_KEY="$ALERT_KEY" "$bin/ottusim" alerts -listen "127.0.0.1:$alert_port" >"$work/alerts.log" 2>&1 &
pids+=($!)

say "adding console users: demo (operator) and viewer (viewer)"
printf '%s\n' "$DEMO_PASSWORD" | RECON_CONSOLE_USERS_FILE="$CONSOLE_USERS" "$bin/reconcile" console-user demo operator
printf '%s\n' "$DEMO_PASSWORD" | RECON_CONSOLE_USERS_FILE="$CONSOLE_USERS" "$bin/reconcile" console-user viewer viewer

say "starting reconcile serve (migrates the schema; the console on 127.0.0.1:$console_port)"
export NATS_URL="nats://127.0.0.1:$nats_port" RECON_GRACE=1s OTTU_ENVIRONMENT=live \
  ALERT_WEBHOOK_URL="http://127.0.0.1:$alert_port/" ALERT_HMAC_KEY="$ALERT_KEY" LOG_LEVEL=warn \
  RECON_CONSOLE_URL="http://127.0.0.1:$console_port"
env RECON_LISTEN="127.0.0.1:$recon_port" RECON_SCHEDULE="0 0 1 1 *" RECON_CONSOLE_LISTEN="127.0.0.1:$console_port" \
  RECON_CONSOLE_USERS_FILE="$CONSOLE_USERS" "$bin/reconcile" serve >"$work/reconcile.log" 2>&1 &
recon_pid=$!
pids+=($!)
wait_http "http://127.0.0.1:$recon_port/readyz" 60

say "simulating Ottu: $PARENTS parents, 20% built to trip a finding, duplicates and out-of-order deliveries; the webhooks of $LOSE of them lost"
OTTU_HMAC_KEYS="$KEY" "$bin/ottusim" send -url "http://127.0.0.1:$http_port/webhooks/ottu" -parents "$PARENTS" \
  -concurrency 16 -grace 1s -lose "$LOSE" -orders-out "$work/orders.csv" -summary-out "$work/summary.json" -truth-out "$work/truth.json" \
  -progress=false
distinct=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["distinct_webhooks"])' "$work/summary.json" 2>/dev/null ||
  grep -o '"distinct_webhooks": [0-9]*' "$work/summary.json" | grep -o '[0-9]*$')

say "loading the merchant's orders into merchant_orders (dated when each payment began, hours ago)"
if command -v clickhouse-client >/dev/null 2>&1; then
  chq --query "INSERT INTO merchant_orders (order_no, amount, currency_code, updated_at) FORMAT CSV" <"$work/orders.csv"
  echo "$(wc -l <"$work/orders.csv") orders loaded"
else
  echo "clickhouse-client not found: skipping (ORDER_AMOUNT_MISMATCH will not fire)"
fi

say "waiting until all $distinct distinct webhooks are in ClickHouse"
stored=0
for _ in $(seq 1 600); do
  stored=$(clickhouse-client --host "${CLICKHOUSE_ADDR%:*}" --port "${CLICKHOUSE_ADDR##*:}" \
    --query "SELECT (SELECT count() FROM $CLICKHOUSE_DATABASE.webhooks_raw) + (SELECT count() FROM $CLICKHOUSE_DATABASE.unreadable_webhooks)" 2>/dev/null || echo 0)
  [ "$stored" -ge "$distinct" ] && break
  sleep 0.2
done
echo "stored: $stored (readable webhooks in webhooks_raw, authentic but unreadable ones kept raw in unreadable_webhooks)"
[ "$stored" -ge "$distinct" ] || { echo "not every webhook was stored" >&2; exit 1; }

say "one reconciliation pass (reconcile run-once)"
sleep 1 # RECON_GRACE is 1s: let the newest webhooks age past it
LOG_LEVEL=info "$bin/reconcile" run-once 2>&1 | grep "reconciliation pass" | sed -E "s/.*\"run_id\":\"([^\"]*)\".*\"parents\":([0-9]*),\"raised\":([0-9]*),\"resolved\":([0-9]*),\"open\":([0-9]*).*/pass \1: \2 parents evaluated, \3 findings raised, \4 resolved, \5 open/"

say "asking Ottu (simulated: ottusim ottu-api) about the findings that need its word, and about what never arrived"
api_port=$(free_port)
env OTTU_API_KEY=demo-api-key OTTU_HMAC_KEYS="$KEY" "$bin/ottusim" ottu-api -listen "127.0.0.1:$api_port" \
  -truth "$work/truth.json" >"$work/ottu-api.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -q "simulated Ottu API" "$work/ottu-api.log" && break; sleep 0.1; done
# A pass asks Ottu last (after its findings are written and alerted); the
# next pass reads what Ottu answered.
for step in "asks" "reads the answers"; do
  OTTU_API_URL="http://127.0.0.1:$api_port" OTTU_API_KEY=demo-api-key OTTU_HMAC_KEYS="$KEY" LOG_LEVEL=info \
    "$bin/reconcile" run-once 2>&1 | grep "reconciliation pass" | sed -E "s/.*\"raised\":([0-9]*).*\"inquiries\":([0-9]*).*/pass that $step: \2 questions answered by Ottu's Payment Status Query, \1 findings raised/"
done
lost=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("lost") or []))' "$work/summary.json" 2>/dev/null || echo "?")
echo "payments whose webhooks were lost: $lost; recovered from Ottu's signed record, each a MISSING_PAYMENT_WEBHOOK:"
chq --query "SELECT count() AS missing_payment_webhook FROM findings WHERE code = 'MISSING_PAYMENT_WEBHOOK' AND status = 'open' FORMAT PrettyCompact"
chq --query "SELECT session_id, detail FROM findings WHERE code = 'MISSING_PAYMENT_WEBHOOK' ORDER BY session_id LIMIT 1 FORMAT Vertical"
echo "coverage (SELECT * FROM coverage): merchant orders and parents accounted for, per day"
chq --query "SELECT * FROM coverage ORDER BY day FORMAT PrettyCompact"
chq --query "SELECT code, substring(confirmation, 1, 12) AS ottu_says, count() AS findings FROM findings
    WHERE confirmation != '' GROUP BY code, ottu_says ORDER BY ottu_says, code FORMAT PrettyCompact"
echo "one finding Ottu's record confirms, and one it contradicts (raised as REPLAYED_WEBHOOK):"
chq --query "SELECT session_id, code, confirmation FROM findings WHERE confirmation LIKE 'confirmed%' ORDER BY session_id LIMIT 1 FORMAT Vertical"
chq --query "SELECT session_id, code, detail FROM findings WHERE code = 'REPLAYED_WEBHOOK' AND detail LIKE '%Ottu%' ORDER BY session_id LIMIT 1 FORMAT Vertical"

say "the alert the first pass sent"
for _ in $(seq 1 50); do grep -q "^alert" "$work/alerts.log" && break; sleep 0.1; done
head -n 14 "$work/alerts.log"

say "reconcile report"
"$bin/reconcile" report -since 720h

say "findings by code (SELECT code, severity, count() FROM findings GROUP BY code, severity)"
chq --query "SELECT code, severity, count() AS findings FROM findings WHERE status = 'open' GROUP BY code, severity ORDER BY severity DESC, code FORMAT PrettyCompact"

say "the findings console"
wait_http "http://127.0.0.1:$console_port/signin" 10
echo "  console:  http://127.0.0.1:$console_port/"
echo "  operator: demo / $DEMO_PASSWORD   (acknowledge, resolve, mute, note: one finding or a selection; mute rules)"
echo "  viewer:   viewer / $DEMO_PASSWORD (reads; personal data masked)"
echo "  Alerts now carry a console_url to each finding's page; they land in $work/alerts.log."
echo "  ingest:   http://127.0.0.1:$http_port/webhooks/ottu (HMAC key $KEY), for webhooks of your own"
# The console stays up to be looked at: until Ctrl-C, or DEMO_HOLD seconds
# (DEMO_HOLD=0 stops here).
drop_demo_database() {
  clickhouse-client --host "${CLICKHOUSE_ADDR%:*}" --port "${CLICKHOUSE_ADDR##*:}" --query "DROP DATABASE IF EXISTS $CLICKHOUSE_DATABASE" || true
}
hold=${DEMO_HOLD:-forever}
trap 'echo; echo "stopping the demo"; drop_demo_database; exit 0' INT TERM
# Meanwhile a pass runs every 30 s, as the schedule would in production: what
# a person does in the console, and webhooks posted to ingest, are reconciled.
passes() {
  while kill -0 "$recon_pid" 2>/dev/null; do
    for _ in $(seq 1 30); do sleep 1; done
    "$bin/reconcile" run-once >>"$work/passes.log" 2>&1 || true
  done
}
if [ "$hold" = forever ]; then
  echo "The demo keeps running for the console, with a pass every 30 s; Ctrl-C stops it (DEMO_HOLD=0 make demo stops here)."
  passes
elif [ "$hold" -gt 0 ]; then
  echo "The demo keeps running for the console for ${hold}s, with a pass every 30 s; Ctrl-C stops it sooner."
  passes & passes_pid=$!
  pids+=("$passes_pid")
  sleep "$hold"
  kill "$passes_pid" 2>/dev/null || true
fi

drop_demo_database
say "done: everything this demo started is stopped"
