package clickhouse_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// A small history with every shape the product's queries must handle, and
// the flow the product runs over it: shared by the modern-ClickHouse check
// and the time-zone test.

func body(tb testing.TB, kind events.Kind, m map[string]any, received time.Time) events.StreamMessage {
	tb.Helper()
	b, _ := json.Marshal(m)
	obj, err := events.ParseObject(b)
	if err != nil {
		tb.Fatal(err)
	}
	msg := events.StreamMessage{Envelope: events.Envelope{ID: events.DeliveryID(kind, obj), Kind: kind, ReceivedAt: received,
		Scheme: events.SchemeA, Body: b}}
	seq++
	msg.StreamSeq = seq
	w, err := events.DecodeObject(obj)
	if err != nil {
		u := events.Salvage(obj, err)
		msg.Unreadable = &u
		return msg
	}
	msg.Webhook = w
	return msg
}

// corpus is a small history with every shape the queries must handle.
func corpus(tb testing.TB, now time.Time) []events.StreamMessage {
	ts := func(d time.Duration) string { return now.Add(d).Format("2006-01-02 15:04:05") }
	at := func(d time.Duration) time.Time { return now.Add(d) }
	pay := func(session, state string, extra map[string]any) map[string]any {
		m := map[string]any{"session_id": session, "state": state, "result": "success", "amount": "25.500",
			"currency_code": "KWD", "order_no": "o-" + session, "reference_number": "r-" + session, "gateway_account": "cc"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	op := func(session, ref, kind, state, amount string, extra map[string]any) map[string]any {
		m := map[string]any{"session_id": session, "reference_number": ref, "operation": kind, "source": "input",
			"amount": amount, "result": "success", "pg_code": "cc",
			"txn": map[string]any{"amount": amount, "currency_code": "KWD", "session_id": "c-" + ref, "state": state}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	const P, O = events.KindPayment, events.KindOperation
	return []events.StreamMessage{
		// Out-of-order states: paid arrives before the pending it supersedes; failed later paid.
		body(tb, P, pay("s-order", "paid", map[string]any{"timestamp_utc": ts(-50 * time.Minute)}), at(-49*time.Minute)),
		body(tb, P, pay("s-order", "pending", map[string]any{"timestamp_utc": ts(-55 * time.Minute)}), at(-40*time.Minute)),
		body(tb, P, pay("s-late", "failed", map[string]any{"timestamp_utc": ts(-3 * time.Hour)}), at(-3*time.Hour)),
		body(tb, P, pay("s-late", "paid", map[string]any{"timestamp_utc": ts(-2 * time.Hour)}), at(-2*time.Hour)),
		// Nullable decimals: totals present, then absent in the latest webhook; children listed.
		body(tb, P, pay("s-null", "paid", map[string]any{"timestamp_utc": ts(-30 * time.Hour), "refunded_amount": "5.000",
			"transactions": []any{map[string]any{"session_id": "c-r1", "state": "refunded", "amount": "5.000", "currency_code": "KWD"},
				map[string]any{"session_id": "c-missing", "state": "refunded", "amount": "1.000", "currency_code": "KWD"}}}), at(-30*time.Hour)),
		body(tb, P, pay("s-null", "paid", map[string]any{"timestamp_utc": ts(-29 * time.Hour), "amount": nil}), at(-29*time.Hour)),
		body(tb, O, op("s-null", "r1", "refund", "refunded", "5.000", map[string]any{"timestamp_utc": ts(-30 * time.Hour)}), at(-30*time.Hour)),
		// The largest amount the store holds, and a refund over it.
		body(tb, P, pay("s-max", "paid", map[string]any{"amount": "999999999999999999999999999999.99999999", "timestamp_utc": ts(-2 * time.Hour)}), at(-2*time.Hour)),
		body(tb, O, op("s-max", "r-max", "refund", "refunded", "999999999999999999999999999999.99999999", map[string]any{"timestamp_utc": ts(-time.Hour)}), at(-time.Hour)),
		// A queued refund, completed; another stuck for days; null operation and amount.
		body(tb, P, pay("s-q", "paid", map[string]any{"timestamp_utc": ts(-100 * time.Hour)}), at(-100*time.Hour)),
		body(tb, O, op("s-q", "rq", "refund", "refund_queued", "2.000", map[string]any{"timestamp_utc": ts(-90 * time.Hour)}), at(-90*time.Hour)),
		body(tb, O, op("s-q", "rq", "refund", "refunded", "2.000", map[string]any{"timestamp_utc": ts(-80 * time.Hour)}), at(-80*time.Hour)),
		body(tb, O, op("s-q", "rq2", "refund", "refund_queued", "1.000", map[string]any{"timestamp_utc": ts(-72 * time.Hour)}), at(-72*time.Hour)),
		body(tb, O, op("s-q", "rnull", "", "refunded", "", map[string]any{"operation": nil, "amount": nil, "timestamp_utc": ts(-70 * time.Hour)}), at(-70*time.Hour)),
		// Conflicting duplicate, pg-side void on an authorization, capture in another currency.
		body(tb, P, pay("s-auth", "authorized", map[string]any{"timestamp_utc": ts(-200 * time.Hour)}), at(-200*time.Hour)),
		body(tb, O, op("s-auth", "v1", "void", "voided", "25.500", map[string]any{"source": "pg", "timestamp_utc": ts(-3 * time.Hour)}), at(-3*time.Hour)),
		body(tb, O, op("s-auth", "c1", "capture", "paid", "10.000", map[string]any{"timestamp_utc": ts(-2 * time.Hour)}), at(-2*time.Hour)),
		body(tb, O, op("s-auth", "c1", "capture", "paid", "11.000", map[string]any{"timestamp_utc": ts(-time.Hour)}), at(-time.Hour)),
		// An orphan, a sandbox webhook, delimiters in text.
		body(tb, O, op("s-orphan", "or1", "refund", "refunded", "1", map[string]any{"timestamp_utc": ts(-5 * time.Hour)}), at(-5*time.Hour)),
		body(tb, P, pay("s-sandbox", "paid", map[string]any{"is_sandbox": true, "timestamp_utc": ts(-4 * time.Hour)}), at(-4*time.Hour)),
		body(tb, P, pay("s-odd|'\"\n", "paid", map[string]any{"order_no": "a|b", "gateway_account": "x\x00y", "timestamp_utc": ts(-4 * time.Hour)}), at(-4*time.Hour)),
		// Unreadable: negative amount, no session_id.
		body(tb, P, pay("s-neg", "paid", map[string]any{"amount": "-1"}), at(-time.Hour)),
		body(tb, P, map[string]any{"state": "paid", "amount": "1"}, at(-time.Hour)),
		// A delivery ingest refused.
		{Envelope: events.Envelope{ID: "rej-1", ReceivedAt: at(-time.Hour), Reject: "bad_signature: x", Body: []byte(`{"x":1}`)}},
	}
}

// flow is what the product does with ClickHouse, end to end.
func flow(t *testing.T, db *clickhouse.DB, now time.Time) {
	t.Helper()
	ctx := context.Background()
	w := &clickhouse.Writer{DB: db}
	if _, err := w.Write(ctx, corpus(t, now), nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Conn().Exec(ctx, "INSERT INTO merchant_orders (order_no, amount, currency_code) SELECT 'o-s-order', toDecimal128('26', 8), 'KWD'"); err != nil {
		t.Fatal(err)
	}
	store := &clickhouse.Store{DB: db}
	cfg := ledger.Config{Grace: 10 * time.Minute, StaleAuthorization: 168 * time.Hour, StuckRefund: 48 * time.Hour, Live: true}
	clock := now
	r := &ledger.Reconciler{Store: store, Config: cfg, Now: func() time.Time { return clock }, FullEvery: 24 * time.Hour,
		OnParentError: func(s string, err error) { t.Errorf("parent %s: %v", s, err) }}
	for i := range 2 { // a full pass, then an incremental one with every window
		rep, err := r.Run(ctx)
		if err != nil || rep.ParentsFailed != 0 {
			t.Fatalf("pass %d on 18.16: %+v %v", i+1, rep, err)
		}
		clock = clock.Add(5 * time.Minute)
	}
	// What Ottu's Payment Status Query said, read back by one more pass.
	if _, err := store.InquiryCandidates(ctx, ledger.InquiryQuery{Codes: []ledger.Code{ledger.OverRefund, ledger.MissingOperation},
		Now: clock, Limit: 30, Throttle: ledger.OttuThrottle}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SweepCandidates(ctx, ledger.SweepQuery{Now: clock, PendingBefore: now, Grace: 30 * time.Minute,
		Watch: 72 * time.Hour, Limit: 30, Throttle: ledger.OttuThrottle}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Coverage(ctx, now.Add(-72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := chtest.Count(t, db, "SELECT count() FROM coverage"); n == 0 {
		t.Fatal("the coverage view has no day")
	}
	if err := store.RecordInquiry(ctx, clickhouse.Inquiry{SessionID: "s-null", AskedAt: now.Add(-time.Minute), Status: 200, Verdict: clickhouse.VerdictFound,
		State: "paid", Children: []events.Child{{SessionID: "c-r1", State: "refunded", Amount: amt("5.000")}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordInquiry(ctx, clickhouse.Inquiry{SessionID: "s-orphan", AskedAt: now.Add(-time.Minute), Status: 404, Verdict: clickhouse.VerdictNotFound}); err != nil {
		t.Fatal(err)
	}
	// A record with every value a confirmation compares, and an answer that is no verdict.
	if err := store.RecordInquiry(ctx, clickhouse.Inquiry{SessionID: "s-q", AskedAt: now.Add(-time.Minute), Status: 200, Verdict: clickhouse.VerdictFound,
		State: "paid", Amount: "10.000", Currency: "KWD", Sandbox: true, Children: []events.Child{{SessionID: "c-q", State: "refunded",
			Amount: amt("1.000"), CurrencyCode: "KWD"}}}); err != nil {
		t.Fatal(err)
	}
	if err := store.RecordInquiry(ctx, clickhouse.Inquiry{SessionID: "s-delim", AskedAt: now.Add(-time.Minute), Status: 404,
		Error: "ottu: answered 404: not Ottu's documented answer", Body: []byte("<html>|\n\x00</html>")}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.PaymentKeys(ctx, "s-null"); err != nil {
		t.Fatal(err)
	}
	if rep, err := r.Run(ctx); err != nil || rep.ParentsFailed != 0 {
		t.Fatalf("pass 3 on 18.16: %+v %v", rep, err)
	}
	if _, err := store.Report(ctx, now.Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	consoleFlow(t, db, now)
	clock = clock.Add(5 * time.Minute)
	if rep, err := r.Run(ctx); err != nil || rep.ParentsFailed != 0 { // with people's actions
		t.Fatalf("pass 4 on 18.16: %+v %v", rep, err)
	}
	// The README's queries.
	for _, q := range []string{
		"SELECT currency_code, gateway_account, count() AS payments, sum(amount) AS paid FROM payments WHERE state = 'paid' GROUP BY currency_code, gateway_account",
		"SELECT * FROM payments WHERE session_id = 's-null'",
		"SELECT reference_number, operation, source, txn_amount, txn_currency_code, txn_state, timestamp_utc FROM operations WHERE session_id = 's-q' ORDER BY timestamp_utc",
		"SELECT severity, code, session_id, detail, first_seen FROM findings WHERE status = 'open' ORDER BY severity DESC, first_seen",
		"SELECT received_at, session_id, field, reason, body FROM unreadable_webhooks ORDER BY received_at DESC LIMIT 20",
		"SELECT received_at, reason, substring(body, 1, 200) FROM rejected_webhooks ORDER BY received_at DESC LIMIT 20",
	} {
		rows, err := db.Conn().Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		rows.Close()
	}
}

// consoleFlow runs what the console reads and writes: the findings'
// states and details, a search, a payment's story and raw body, each
// action and mute rules; and pins the console's reading of people's
// decisions (ledger.Decision, through casefile.Finding.Apply) to the
// findings view's.
func consoleFlow(t *testing.T, db *clickhouse.DB, now time.Time) {
	t.Helper()
	ctx := context.Background()
	all, n, err := db.FindingStates(ctx, 0, 0)
	if err != nil || len(all) < 5 {
		t.Fatalf("finding states: %d %v", len(all), err)
	}
	top := slices.MaxFunc(all, func(a, b casefile.Finding) int { return cmp.Compare(a.Version, b.Version) }).Version
	if again, m, err := db.FindingStates(ctx, top+1, top+10); err != nil || len(again) != 0 || m != 0 {
		t.Fatalf("findings written after the highest version: %d (%d versions) %v", len(again), m, err)
	}
	if one, m, err := db.FindingStates(ctx, top, top); err != nil || len(one) != 1 || m != 1 || one[0].Version != top || n < top {
		t.Fatalf("the highest version: %+v (%d versions, %d in all) %v", one, m, n, err)
	}
	if _, err := db.AddActions(ctx, []casefile.Action{
		{SessionID: all[0].SessionID, Code: all[0].Code, Action: casefile.ActionAcknowledge, Actor: "ada"},
		{SessionID: all[0].SessionID, Code: all[0].Code, Action: casefile.ActionNote, Actor: "ada", Note: "asked the bank"},
		{SessionID: all[0].SessionID, Code: all[0].Code, Action: casefile.ActionMute, Actor: "ada", Until: new(now.Add(48 * time.Hour))},
		{SessionID: all[1].SessionID, Code: all[1].Code, Action: casefile.ActionResolve, Actor: "bob", Note: "goodwill"},
		{SessionID: all[2].SessionID, Code: all[2].Code, Action: casefile.ActionResolve, Actor: "bob", Note: "stale", Evidence: "older"},
		{SessionID: all[3].SessionID, Code: all[3].Code, Action: casefile.ActionAcknowledge, Actor: "cy", Evidence: "older"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddActions(ctx, []casefile.Action{
		{SessionID: all[3].SessionID, Code: all[3].Code, Action: casefile.ActionResolve, Actor: "cy", Note: "then resolved"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddActions(ctx, []casefile.Action{{SessionID: "no-such", Code: all[0].Code, Action: casefile.ActionAcknowledge}}); !errors.Is(err, casefile.ErrNoFinding) {
		t.Fatalf("an action on no finding: %v", err)
	}
	rule, err := db.AddMuteRule(ctx, ledger.MuteRule{Code: all[4].Code, Gateway: all[4].Gateway, Until: now.AddDate(5, 0, 0), Actor: "ada", Note: "bank outage"})
	if err != nil {
		t.Fatal(err)
	}
	ended, err := db.AddMuteRule(ctx, ledger.MuteRule{Currency: "XYZ", Until: now.AddDate(5, 0, 0), Actor: "ada", Note: "never mind"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.EndMuteRule(ctx, ended.ID, "bob", "not needed"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EndMuteRule(ctx, ended.ID, "bob", "twice"); !errors.Is(err, casefile.ErrNoRule) {
		t.Fatalf("a rule ended twice: %v", err)
	}
	states, _, err := db.FindingStates(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	decisions, err := db.Decisions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(decisions.Rules) != 2 || decisions.Rules[0].EndedBy != "bob" && decisions.Rules[1].EndedBy != "bob" {
		t.Fatalf("rules %+v", decisions.Rules)
	}
	for i := range states {
		states[i].Apply(decisions.Of(states[i].Key(), states[i].Gateway, states[i].Currency))
	}
	compareView(t, db, states)
	got := map[ledger.Key]casefile.Finding{}
	for _, f := range states {
		got[f.Key()] = f
	}
	if g := got[all[2].Key()]; g.ResolvedBy != "" {
		t.Errorf("a resolution of older evidence applies: %+v", g)
	}
	if g := got[all[1].Key()]; g.ResolvedBy != "bob" || g.Status != "resolved" {
		t.Errorf("a resolution by hand does not apply: %+v", g)
	}
	if g := got[all[4].Key()]; g.MutedUntil == nil || !g.MutedUntil.Equal(rule.Until) {
		t.Errorf("the rule does not mute %s: %+v", all[4].Code, g)
	}
	if _, err := db.FindingDetails(ctx, []ledger.Key{all[0].Key()}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SessionsByKey(ctx, "o-s-order"); err != nil {
		t.Fatal(err)
	}
	story, err := db.Story(ctx, all[0].SessionID)
	if err != nil || len(story.Findings) == 0 || len(story.Actions) != 3 {
		t.Fatalf("story of %s: %+v %v", all[0].SessionID, story, err)
	}
	for _, d := range story.Deliveries {
		if _, ok, err := db.RawBody(ctx, all[0].SessionID, d.DeliveryID); err != nil || !ok {
			t.Fatalf("raw body of %s: %v %v", d.DeliveryID, ok, err)
		}
	}
}

// compareView fails unless the findings view shows each finding as states,
// people's decisions applied in Go, says.
func compareView(t *testing.T, db *clickhouse.DB, states []casefile.Finding) {
	t.Helper()
	type seen struct {
		status, ackBy, resolvedBy string
		ackAt, resolvedAt, muted  uint32
	}
	u := func(p *time.Time) uint32 {
		if p == nil {
			return 0
		}
		return uint32(p.Unix())
	}
	got := map[ledger.Key]seen{}
	for _, f := range states {
		got[f.Key()] = seen{f.Status, f.AcknowledgedBy, f.ResolvedBy, u(f.AcknowledgedAt), u(f.ResolvedAt), u(f.MutedUntil)}
	}
	rows, err := db.Conn().Query(context.Background(), `SELECT session_id, code, status, acknowledged_by, resolved_by,
		toUInt32(ifNull(acknowledged_at, toDateTime(0))), toUInt32(ifNull(resolved_at, toDateTime(0))),
		toUInt32(ifNull(muted_until, toDateTime(0))) FROM findings`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k ledger.Key
		var code string
		var v seen
		if err := rows.Scan(&k.SessionID, &code, &v.status, &v.ackBy, &v.resolvedBy, &v.ackAt, &v.resolvedAt, &v.muted); err != nil {
			t.Fatal(err)
		}
		k.Code = ledger.Code(code)
		n++
		if got[k] != v {
			t.Errorf("%v: the console reads %+v, the findings view %+v", k, got[k], v)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(states) {
		t.Fatalf("the view has %d findings, the console %d", n, len(states))
	}
}
