-- ottu-recon schema 12: completeness, what should have reached us and has
-- not (docs/completeness.md).

-- A question asked by order_no (an order we never had a webhook for) names
-- the order; a question by session_id names the order the answer carried.
-- Ottu's per-transaction throttle is counted by both keys together.
ALTER TABLE ottu_inquiries ADD COLUMN order_no String;

-- coverage: per UTC day, what was expected and how much of it has a final
-- state known. Expected: every merchant order (by the day of its updated_at)
-- and every parent with no merchant order (by the day its first payment
-- delivery arrived); an order and its parents count once. Accounted: a final
-- state is known, from a webhook or from Ottu's record. Recovered: known only
-- from Ottu's record. Unknown: no final state known yet. A payment delivery
-- whose delivery_id starts with 'inquiry:' is Ottu's signed record that
-- ottu-recon asked for (Payment Status Query), not a webhook.
CREATE VIEW IF NOT EXISTS {db}.coverage AS
SELECT day, count() AS expected, toUInt64(sum(final)) AS accounted, toUInt64(sum(final AND NOT by_webhook)) AS recovered,
    toUInt64(sum(NOT final)) AS unknown
FROM (
    SELECT key, if(max(is_order) = 1, maxIf(d, is_order = 1), min(d)) AS day, max(terminal) AS final,
        max(webhook_terminal) AS by_webhook
    FROM (
        SELECT concat('o:', order_no) AS key, toDate(max(updated_at), 'UTC') AS d, toUInt8(1) AS is_order,
            toUInt8(0) AS terminal, toUInt8(0) AS webhook_terminal
        FROM {db}.merchant_orders
        GROUP BY order_no
        UNION ALL
        SELECT if(order_no != '' AND order_no IN (SELECT order_no FROM {db}.merchant_orders), concat('o:', order_no),
                concat('s:', session_id)) AS key,
            toDate(min(received_at), 'UTC') AS d, toUInt8(0) AS is_order, max(is_terminal) AS terminal,
            max(is_terminal AND NOT startsWith(delivery_id, 'inquiry:')) AS webhook_terminal
        FROM {db}.payment_events
        GROUP BY session_id, order_no
    ) AS keyed
    GROUP BY key
) AS per_key
GROUP BY day;

-- Per pass: how many of its questions to Ottu the completeness sweep asked.
ALTER TABLE recon_runs ADD COLUMN swept UInt64;
