#!/usr/bin/env bash
# make bench: a synthetic history loaded inside ClickHouse (INSERT ... SELECT
# FROM numbers: seconds, not hours), then each figure of ottu-recon next to
# its yardstick, measured in the same run on the same machine:
#
#   full pass          reconcile run-once on an empty findings table, and its
#                      peak RSS; yardstick: the bare GROUP BY of the same rows
#                      (argMax of state and amount per parent, and per
#                      operation), FORMAT Null
#   incremental pass   after 10,000 parents changed; yardstick: the full pass
#   one-payment lookup the payments view by session_id; yardstick: the same
#                      argMax over the table, filtered by session_id
#
# PARENTS (default 1,000,000) parents, each with 2 payment deliveries and 3
# operations. Needs a ClickHouse (scripts/clickhouse.sh run sets it up).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
PARENTS=${PARENTS:-1000000}
host=${CLICKHOUSE_ADDR%%,*}
db="${BENCH_DB:-ottu_bench_$$}"
export CLICKHOUSE_DATABASE=$db NATS_URL=nats://127.0.0.1:1 LOG_LEVEL=error RECON_PASS_TIMEOUT=30m
ch() { clickhouse-client --host "${host%:*}" --port "${host##*:}" --database "$db" "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { printf '| %-34s | %12s | %-44s | %12s | %6s |\n' "$@"; }
[ -n "${BENCH_KEEP:-}" ] || trap 'clickhouse-client --host "${host%:*}" --port "${host##*:}" --query "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT

go build -o bin/ ./cmd/reconcile
bin/reconcile migrate

echo "loading $PARENTS parents ($((PARENTS * 2)) payment deliveries, $((PARENTS * 3)) operation deliveries)..." >&2
t0=$(now)
ch --query "INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, order_no, reference_number,
  state, result, amount, currency_code, gateway_account, gateway_name, payment_type, is_sandbox, timestamp_utc, is_terminal,
  state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
  SELECT concat('p', toString(number)), number, toDateTime(1700000000 + number), toDateTime(1700000000 + number),
    concat('s', toString(intDiv(number, 2))), '', concat('a', toString(number)), if(number % 2 = 0, 'pending', 'paid'),
    'success', toDecimal128(100 + number % 1000, 8), 'KWD', 'cc', 'mpgs', 'one_off', 0, toDateTime(1700000000 + number),
    number % 2, if(number % 2 = 0, 2, 7), [], [], [], []
  FROM system.numbers LIMIT $((PARENTS * 2))"
ch --query "INSERT INTO operation_events (delivery_id, stream_seq, received_at, stored_at, reference_number, session_id, order_no,
  child_session_id, operation, source, result, success, pg_code, amount, txn_amount, txn_currency_code, txn_state, is_sandbox,
  timestamp_utc, is_terminal, state_rank)
  SELECT concat('o', toString(number)), number, toDateTime(1700000000 + number), toDateTime(1700000000 + number),
    concat('op', toString(number)), concat('s', toString(intDiv(number, 3))), '', concat('c', toString(number)), 'refund',
    'input', 'success', 1, 'cc', toDecimal128(1, 8), toDecimal128(1, 8), 'KWD', 'refunded', 0,
    toDateTime(1700000000 + number), 1, 1
  FROM system.numbers LIMIT $((PARENTS * 3))"
echo "loaded in $(secs "$t0" "$(now)") s" >&2

# Yardstick: the bare aggregation of the same rows.
t0=$(now)
ch --query "SELECT session_id, argMax(state, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)),
  argMax(amount, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) FROM payment_events GROUP BY session_id FORMAT Null"
ch --query "SELECT session_id, reference_number, argMax(txn_state, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)),
  argMax(txn_amount, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) FROM operation_events
  GROUP BY session_id, reference_number FORMAT Null"
bare=$(secs "$t0" "$(now)")

# The full pass, and its peak RSS.
t0=$(now)
/usr/bin/time -f '%M' -o "$root/.tmp/bench-rss" bin/reconcile run-once
full=$(secs "$t0" "$(now)")
rss=$(( $(cat "$root/.tmp/bench-rss") / 1024 ))

# 10,000 parents change (a delivery each, stored now); the incremental pass.
ch --query "INSERT INTO payment_events (delivery_id, stream_seq, received_at, stored_at, session_id, order_no, reference_number,
  state, result, amount, currency_code, gateway_account, gateway_name, payment_type, is_sandbox, timestamp_utc, is_terminal,
  state_rank, child_session_ids, child_states, child_amounts, child_currency_codes)
  SELECT concat('q', toString(number)), 0, now(), now(), concat('s', toString(number * 97 % $PARENTS)), '', concat('b', toString(number)), 'paid', 'success',
    toDecimal128(5, 8), 'KWD', 'cc', 'mpgs', 'one_off', 0, now(), 1, 7, [], [], [], []
  FROM system.numbers LIMIT 10000"
t0=$(now)
bin/reconcile run-once
incremental=$(secs "$t0" "$(now)")

# One payment by session_id.
key="s$((PARENTS / 3))"
t0=$(now)
for _ in 1 2 3 4 5 6 7 8 9 10; do
  ch --enable_optimize_predicate_expression=1 --query "SELECT state, amount FROM payments WHERE session_id = '$key' FORMAT Null"
done
view=$(awk -v s="$(secs "$t0" "$(now)")" 'BEGIN { printf "%.3f", s / 10 }')
t0=$(now)
for _ in 1 2 3 4 5 6 7 8 9 10; do
  ch --query "SELECT argMax(state, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)),
    argMax(amount, (is_terminal, timestamp_utc, state_rank, received_at, stream_seq)) FROM payment_events
    WHERE session_id = '$key' FORMAT Null"
done
direct=$(awk -v s="$(secs "$t0" "$(now)")" 'BEGIN { printf "%.3f", s / 10 }')

echo
echo "ottu-recon bench: $PARENTS parents, $((PARENTS * 2)) payment and $((PARENTS * 3)) operation deliveries, ClickHouse $(ch --query 'SELECT version()'), $(nproc) cores"
row "what" "ottu-recon" "yardstick, same rows, same run" "yardstick" "ratio"
row "----" "----------" "------------------------------" "---------" "-----"
row "full pass (run-once)" "${full} s" "bare GROUP BY of the same rows" "${bare} s" "$(ratio "$full" "$bare")"
row "full pass peak RSS" "${rss} MB" "target" "256 MB" "$(ratio "$rss" 256)"
row "incremental pass, 10k changed" "${incremental} s" "the full pass" "${full} s" "$(ratio "$incremental" "$full")"
row "one payment from the view" "${view} s" "argMax on the table by session_id" "${direct} s" "$(ratio "$view" "$direct")"
echo "(each query through clickhouse-client includes its ~10-20 ms start-up)"
