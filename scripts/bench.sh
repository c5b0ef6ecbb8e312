#!/usr/bin/env bash
# make bench: each figure of ottu-recon next to its yardstick, measured in the
# same run on the same machine (docs/performance.md explains each):
#
#   full pass          reconcile run-once on an empty findings table, and its
#                      peak RSS; yardstick: the bare GROUP BY of the same rows
#                      (argMax of state and amount per parent, and per
#                      operation), FORMAT Null
#   incremental pass   after 10,000 parents changed; yardstick: the full pass
#   one-payment lookup the payments view by session_id; yardstick: the same
#                      argMax over the table, filtered by session_id
#   ingest             distinct signed webhooks (ottusim send, 64 connections)
#                      into ingest with its embedded JetStream; yardstick: a
#                      bare server that only parses, verifies and decodes them
#                      (yardstick ingest); then ingest's p50/p99 at half the
#                      yardstick's rate, and its peak RSS
#   sink               the JetStream backlog ingest stored, drained by
#                      reconcile serve into empty tables; yardstick: plain
#                      clickhouse-go batch inserts (10,000 rows a batch) of the
#                      very rows it stored (yardstick sink)
#
# The history is generated inside ClickHouse (INSERT ... SELECT FROM numbers:
# seconds, not hours), at two sizes: PARENTS (default 300,000) and GROWTH
# (default 10) times as many, each parent with 2 payment deliveries and 3
# operations, one parent every 50 seconds (3M parents span almost five years,
# one partition a month), each parent's deliveries within hours of its
# creation. The database is created as schema 9 left it, then `reconcile
# migrate` upgrades it (the migration's time). The 10,000 changed parents
# get a new refund each, spread evenly over the history. WEBHOOKS (default
# 50,000) is the size of the ingest run and of the sink's backlog. Needs a
# ClickHouse (scripts/clickhouse.sh run sets one up).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PARENTS=${PARENTS:-300000}
GROWTH=${GROWTH:-10}
CHANGED=10000
host=${CLICKHOUSE_ADDR%%,*}
db="${BENCH_DB:-ottu_bench_$$}"
dbs=("$db" "${db}_large" "${db}_sink")
export CLICKHOUSE_DATABASE=$db NATS_URL=nats://127.0.0.1:1 LOG_LEVEL=error RECON_PASS_TIMEOUT=30m
ch() { clickhouse-client --host "${host%:*}" --port "${host##*:}" --database "$db" "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { printf '| %-34s | %12s | %-44s | %12s | %6s |\n' "$@"; }
WEBHOOKS=${WEBHOOKS:-50000}
work=$(mktemp -d)
pids=()
cleanup() {
  [ "$BASHPID" = "$$" ] || return 0 # not in the subshells of background jobs
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"
  if [ -z "${BENCH_KEEP:-}" ]; then
    for d in "${dbs[@]}"; do
      clickhouse-client --host "${host%:*}" --port "${host##*:}" --query "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT
# peak RSS of a running process, in MB
peak() { awk '/^VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status"; }
command -v /usr/bin/time >/dev/null || { apt-get install -y time >/dev/null 2>&1 || (apt-get update && apt-get install -y time) >/dev/null; }

go build -o bin/ ./cmd/reconcile ./cmd/ingest ./cmd/ottusim ./cmd/yardstick
end=$(( $(date +%s) / 86400 * 86400 - 86400 )) # the history ends yesterday

# load_history DB N: N parents on schema 9, then the upgrade; prints the
# migration's seconds and the deliveries it indexed.
load_history() {
  local d=$1 n=$2
  CLICKHOUSE_DATABASE=$d bin/yardstick schema-at 9
  local t="toDateTime(toUInt32($end - $n * 50 + intDiv(number, K) * 50 + OFFSET))"
  local p=${t//K/2} o=${t//K/3}
  clickhouse-client --host "${host%:*}" --port "${host##*:}" --database "$d" --query "INSERT INTO payment_events (delivery_id,
    stream_seq, received_at, stored_at, session_id, order_no, reference_number, state, result, amount, currency_code, gateway_account,
    gateway_name, payment_type, is_sandbox, timestamp_utc, is_terminal, state_rank, child_session_ids, child_states, child_amounts,
    child_currency_codes)
    SELECT concat('p', toString(number)), number, ${p//OFFSET/number % 2 * 60}, ${p//OFFSET/number % 2 * 60 + 1},
      concat('s', toString(intDiv(number, 2))), concat('o', toString(intDiv(number, 2))), concat('a', toString(number)),
      if(number % 2 = 0, 'pending', 'paid'), 'success', toDecimal128(100 + number % 1000, 8), 'KWD', 'cc', 'mpgs', 'one_off', 0,
      ${p//OFFSET/number % 2 * 60}, number % 2, if(number % 2 = 0, 2, 7), [], [], [], []
    FROM system.numbers LIMIT $((n * 2))"
  clickhouse-client --host "${host%:*}" --port "${host##*:}" --database "$d" --query "INSERT INTO operation_events (delivery_id,
    stream_seq, received_at, stored_at, reference_number, session_id, order_no, child_session_id, operation, source, result, success,
    pg_code, amount, txn_amount, txn_currency_code, txn_state, is_sandbox, timestamp_utc, is_terminal, state_rank)
    SELECT concat('o', toString(number)), number, ${o//OFFSET/(number % 3 + 1) * 3600}, ${o//OFFSET/(number % 3 + 1) * 3600 + 1},
      concat('op', toString(number)), concat('s', toString(intDiv(number, 3))), '', concat('c', toString(number)), 'refund',
      'input', 'success', 1, 'cc', toDecimal128(1, 8), toDecimal128(1, 8), 'KWD', 'refunded', 0,
      ${o//OFFSET/(number % 3 + 1) * 3600}, 1, 1
    FROM system.numbers LIMIT $((n * 3))"
  local t0
  t0=$(now)
  CLICKHOUSE_DATABASE=$d bin/reconcile migrate
  echo "$(secs "$t0" "$(now)") $((n * 5))"
}

# measure DB N: the full pass against its yardstick, then the incremental pass
# after CHANGED parents spread over the history changed, then after the
# CHANGED newest changed; sets bare_N, full_N, rss_N, inc_N, recent_N, mig_N.
measure() {
  local d=$1 n=$2 t0 m
  echo "loading $n parents ($((n * 2)) payment deliveries, $((n * 3)) operation deliveries) into $d, then migrating..." >&2
  m=$(load_history "$d" "$n")
  export CLICKHOUSE_DATABASE=$d
  # Yardstick: the bare aggregation of the same rows (a state per parent and
  # per operation: at 3M parents it needs more than the 4 GB a query may
  # use on the test server, so the yardstick may use 16).
  t0=$(now)
  ch2() { clickhouse-client --host "${host%:*}" --port "${host##*:}" --database "$d" "$@"; }
  ch2 --max_memory_usage=16000000000 --query "SELECT session_id, argMax(state, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)),
    argMax(amount, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) FROM payment_events GROUP BY session_id FORMAT Null"
  ch2 --max_memory_usage=16000000000 --query "SELECT session_id, reference_number, argMax(txn_state, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)),
    argMax(txn_amount, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) FROM operation_events
    GROUP BY session_id, reference_number FORMAT Null"
  printf -v "bare_$n" '%s' "$(secs "$t0" "$(now)")"
  # The full pass, and its peak RSS.
  t0=$(now)
  /usr/bin/time -f '%M' -o "$work/bench-rss" bin/reconcile run-once
  printf -v "full_$n" '%s' "$(secs "$t0" "$(now)")"
  printf -v "rss_$n" '%s' "$(( $(cat "$work/bench-rss") / 1024 ))"
  # CHANGED parents, spread evenly over the history, get a new refund each
  # (stored now); the incremental pass.
  ch2 --query "INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number, session_id, order_no,
    child_session_id, operation, source, result, success, pg_code, amount, txn_amount, txn_currency_code, txn_state, is_sandbox,
    timestamp_utc, is_terminal, state_rank)
    SELECT concat('n', toString(number)), 0, now(), now(), concat('new', toString(number)),
      concat('s', toString(intDiv(number * $n, $CHANGED))), '', concat('cn', toString(number)), 'refund', 'input', 'success', 1, 'cc',
      toDecimal128(1, 8), toDecimal128(1, 8), 'KWD', 'refunded', 0, now(), 1, 1
    FROM system.numbers LIMIT $CHANGED"
  t0=$(now)
  bin/reconcile run-once
  printf -v "inc_$n" '%s' "$(secs "$t0" "$(now)")"
  # The same for the CHANGED most recent parents (the last days of the
  # history: where refunds and captures mostly come), once the first
  # changes are out of the next pass's reach: a pass looks ledger.Margin (2
  # minutes) before the last pass's watermark, so one more pass runs first,
  # more than 2 minutes later.
  sleep 125
  bin/reconcile run-once
  ch2 --query "INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number, session_id, order_no,
    child_session_id, operation, source, result, success, pg_code, amount, txn_amount, txn_currency_code, txn_state, is_sandbox,
    timestamp_utc, is_terminal, state_rank)
    SELECT concat('r', toString(number)), 0, now(), now(), concat('recent', toString(number)),
      concat('s', toString($n - 1 - number)), '', concat('cr', toString(number)), 'refund', 'input', 'success', 1, 'cc',
      toDecimal128(1, 8), toDecimal128(1, 8), 'KWD', 'refunded', 0, now(), 1, 1
    FROM system.numbers LIMIT $CHANGED"
  t0=$(now)
  bin/reconcile run-once
  printf -v "recent_$n" '%s' "$(secs "$t0" "$(now)")"
  printf -v "mig_$n" '%s' "$m"
}
large=$((PARENTS * GROWTH))
measure "$db" "$PARENTS"
measure "${db}_large" "$large"
v() { local name="$1_$2"; echo "${!name}"; }
full=$(v full "$large") bare=$(v bare "$large") rss=$(v rss "$large")
small_inc=$(v inc "$PARENTS") large_inc=$(v inc "$large")
read -r mig_secs mig_rows <<<"$(v mig "$large")"
sink_db=${db}_sink
export CLICKHOUSE_DATABASE=${db}_large
db=${db}_large
# One payment by session_id, and one operation by reference_number: the
# median of 11 server-side times (clickhouse-client --time).
median() { sort -n | awk '{ a[NR] = $1 } END { printf "%.3f", a[int((NR + 1) / 2)] }'; }
timed() { for _ in 1 2 3 4 5 6 7 8 9 10 11; do ch --time --enable_optimize_predicate_expression=1 --query "$1 FORMAT Null" 2>&1 >/dev/null; done | median; }
key="s$((large / 3))"
view=$(timed "SELECT state, amount FROM payments WHERE session_id = '$key'")
direct=$(timed "SELECT argMax(state, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)),
    argMax(amount, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) FROM payment_events WHERE session_id = '$key'")
ref="op$((large / 3))"
opview=$(timed "SELECT txn_state, txn_amount FROM operations WHERE reference_number = '$ref'")
opdirect=$(timed "SELECT argMax(txn_state, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)),
    argMax(txn_amount, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) FROM operation_events WHERE reference_number = '$ref'")

# Ingest: the yardstick first, then ingest at full speed, then ingest at
# half the yardstick's rate. Each run sends webhooks of its own (a seed each):
# distinct, as the stream de-duplicates repeats.
export OTTU_HMAC_KEYS=bench-key-not-a-secret
parents=$(( WEBHOOKS / 3 ))
send() { bin/ottusim send -progress=false -duplicates 0 -concurrency 64 -parents "$parents" -summary-out "$work/$1.json" "${@:2}" >/dev/null; }
field() { awk -v k="\"$2\":" '{ n = split($0, a, ","); for (i = 1; i <= n; i++) if (index(a[i], k)) { sub(/.*:/, "", a[i]); print a[i] + 0 } }' "$work/$1.json"; }
yport=$(bin/yardstick port)
bin/yardstick ingest -listen "127.0.0.1:$yport" & pids+=($!)
bin/yardstick wait "http://127.0.0.1:$yport/"
send yard -url "http://127.0.0.1:$yport/webhooks/ottu" -seed 11
kill "${pids[-1]}"
yard_rate=$(field yard per_second)

iport=$(bin/yardstick port)
nport=$(bin/yardstick port)
INGEST_LISTEN=127.0.0.1:$iport NATS_EMBEDDED=true NATS_LISTEN=127.0.0.1:$nport NATS_STORE_DIR=$work/nats \
  NATS_URL=nats://127.0.0.1:$nport LOG_LEVEL=info INGEST_SPOOL_DIR=$work/spool bin/ingest >"$work/ingest.log" 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
bin/yardstick wait "http://127.0.0.1:$iport/readyz"
send full -url "http://127.0.0.1:$iport/webhooks/ottu" -seed 12
ingest_rate=$(field full per_second)
half=$(awk -v r="$yard_rate" 'BEGIN { printf "%d", r / 2 }')
send half -url "http://127.0.0.1:$iport/webhooks/ottu" -seed 13 -rate "$half"
ingest_rss=$(peak "$ingest_pid")
stored=$(bin/yardstick stored "http://127.0.0.1:$iport/metrics")

# Sink: reconcile serve drains the backlog into a database of its own.
rport=$(bin/yardstick port)
export CLICKHOUSE_DATABASE=$sink_db
CLICKHOUSE_DATABASE=$sink_db NATS_URL=nats://127.0.0.1:$nport RECON_LISTEN=127.0.0.1:$rport RECON_SCHEDULE="0 0 1 1 *" \
  LOG_LEVEL=info bin/reconcile serve >"$work/reconcile.log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
bin/yardstick drain -want "$stored" >"$work/drain"
sink_rate=$(awk '{ print $(NF-1) }' "$work/drain")
serve_rss=$(peak "$serve_pid")
kill "$serve_pid"
bin/yardstick sink >"$work/sink"
yard_sink_rate=$(awk '{ print $(NF-1) }' "$work/sink")

short() { awk -v n="$1" 'BEGIN { if (n >= 1e6) printf "%gM", n / 1e6; else printf "%gk", n / 1e3 }'; }
echo
echo "ottu-recon bench: histories of $(short "$PARENTS") and $(short "$large") parents (2 payment and 3 operation deliveries each), $CHANGED changed, $WEBHOOKS webhooks, ClickHouse $(ch --query 'SELECT version()'), $(nproc) cores"
row "what" "ottu-recon" "yardstick, same rows, same run" "yardstick" "ratio"
row "----" "----------" "------------------------------" "---------" "-----"
for n in "$PARENTS" "$large"; do
  row "full pass, $(short "$n") parents" "$(v full "$n") s" "bare GROUP BY of the same rows" "$(v bare "$n") s" "$(ratio "$(v full "$n")" "$(v bare "$n")")"
done
row "full pass peak RSS, $(short "$large")" "${rss} MB" "target" "256 MB" "$(ratio "$rss" 256)"
for n in "$PARENTS" "$large"; do
  row "incremental, $(short "$CHANGED") of $(short "$n") changed" "$(v inc "$n") s" "the full pass" "$(v full "$n") s" "$(ratio "$(v inc "$n")" "$(v full "$n")")"
done
row "incremental, ${GROWTH}x the history" "${large_inc} s" "incremental, $(short "$PARENTS") parents" "${small_inc} s" "$(ratio "$large_inc" "$small_inc")"
for n in "$PARENTS" "$large"; do
  row "incremental, $(short "$CHANGED") newest of $(short "$n")" "$(v recent "$n") s" "the full pass" "$(v full "$n") s" "$(ratio "$(v recent "$n")" "$(v full "$n")")"
done
row "incremental newest, ${GROWTH}x history" "$(v recent "$large") s" "incremental newest, $(short "$PARENTS")" "$(v recent "$PARENTS") s" "$(ratio "$(v recent "$large")" "$(v recent "$PARENTS")")"
row "migrate from schema 9, $(short "$large")" "${mig_secs} s" "per million deliveries" "$(awk -v s="$mig_secs" -v r="$mig_rows" 'BEGIN { printf "%.2f s", s / r * 1e6 }')" ""
row "one payment from payments" "${view} s" "argMax on the table by session_id" "${direct} s" "$(ratio "$view" "$direct")"
row "one operation from operations" "${opview} s" "argMax on the table by reference" "${opdirect} s" "$(ratio "$opview" "$opdirect")"
row "ingest, 64 connections" "$(field full per_second) /s" "bare verify+decode server" "${yard_rate} /s" "$(ratio "$ingest_rate" "$yard_rate")"
row "ingest p50 / p99 at ${half}/s" "$(field half latency_p50_ms) / $(field half latency_p99_ms) ms" "" "" ""
row "ingest peak RSS" "${ingest_rss} MB" "" "" ""
row "sink: backlog of $stored drained" "${sink_rate} /s" "clickhouse-go batch insert, 10k rows" "${yard_sink_rate} /s" "$(ratio "$sink_rate" "$yard_sink_rate")"
row "reconcile serve peak RSS" "${serve_rss} MB" "" "" ""
echo "(lookups: server-side time, median of 11; rates: ottusim send, 64 connections, on the same 2 cores)"
