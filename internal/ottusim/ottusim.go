// Package ottusim generates realistic Ottu traffic: signed payment and
// operation webhooks for purchases and authorizations, partial captures and
// refunds, voids, queued refunds, pending -> paid sequences, in currencies with
// 2 and 3 decimals, plus parents built to trip each finding code. Every parent
// knows which findings it must raise, so tests can assert the exact set.
//
// It signs exactly as docs/ottu-webhooks.md §3 describes (events.Sign).
package ottusim

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Kind is a scenario: a clean kind, or a finding code to trip.
type Kind string

// Clean scenarios. Anomaly scenarios are named by their finding code.
const (
	Purchase          Kind = "purchase"
	PurchaseRefunded  Kind = "purchase_refunded"
	PendingThenPaid   Kind = "pending_then_paid"
	FailedThenPaid    Kind = "failed_then_paid"
	Failed            Kind = "failed"
	AuthCaptured      Kind = "auth_captured"
	AuthVoided        Kind = "auth_voided"
	QueuedRefundDone  Kind = "queued_refund_done"
	RecentListedChild Kind = "recent_listed_child" // a child listed moments ago, its webhook still on the way
)

// CleanKinds raise no finding.
var CleanKinds = []Kind{Purchase, PurchaseRefunded, PendingThenPaid, FailedThenPaid, Failed, AuthCaptured,
	AuthVoided, QueuedRefundDone, RecentListedChild}

// AnomalyKinds trip one finding code each: every code webhooks alone can
// raise (MISSING_PAYMENT_WEBHOOK needs webhooks that never came: Lose).
var AnomalyKinds = func() []Kind {
	var out []Kind
	for _, c := range ledger.Codes {
		if c.Code != ledger.MissingPaymentWebhook {
			out = append(out, Kind(c.Code))
		}
	}
	return out
}()

// Webhook is one webhook of a parent. At is its timestamp_utc; ingest would
// receive it at about that time.
type Webhook struct {
	Kind   events.Kind
	Object map[string]any
	At     time.Time
}

// Order is a merchant_orders row.
type Order struct {
	OrderNo   string
	Amount    string
	Currency  string
	UpdatedAt time.Time // when the merchant created it: as the payment began
}

// Parent is one parent payment and everything Ottu sends about it.
type Parent struct {
	Kind      Kind
	SessionID string
	Webhooks  []Webhook
	Order     *Order        // the order the merchant expects, when the scenario has one
	Expect    []ledger.Code // findings this parent must raise (given the Generator's Grace)
	// Truth is Ottu's own record of the parent, unsigned: what its Payment
	// Status Query answers (the API signs it). It lists the children Ottu
	// made, which leaves out operations forged by whoever replayed a body.
	Truth map[string]any
	// Created is when Ottu created the parent (its first webhook).
	Created time.Time
}

// Generator builds parents. Set the fields; the zero Rand is seeded with 1.
type Generator struct {
	Rand  *rand.Rand
	Now   time.Time     // "now" of the traffic; webhooks are dated before it
	Grace time.Duration // RECON_GRACE of the reconciler that will check them
	n     int
}

type currency struct {
	code     string
	decimals int32
}

var currencies = []currency{{"KWD", 3}, {"BHD", 3}, {"OMR", 3}, {"SAR", 2}, {"AED", 2}, {"USD", 2}}

var gateways = []struct{ account, name string }{{"credit-card", "mpgs"}, {"knet", "knet"}, {"cybersource", "cybersource"}}

func (g *Generator) rnd() *rand.Rand {
	if g.Rand == nil {
		g.Rand = rand.New(rand.NewPCG(1, 2))
	}
	return g.Rand
}

func (g *Generator) id(prefix string) string {
	g.n++
	h := sha1.Sum([]byte(fmt.Sprintf("%s-%d-%d", prefix, g.n, g.rnd().Uint64())))
	return hex.EncodeToString(h[:])
}

func (g *Generator) ref(prefix string) string {
	g.n++
	return fmt.Sprintf("%s%06d%s", prefix, g.n, g.id("r")[:4])
}

// parentCtx carries what the webhooks of one parent share.
type parentCtx struct {
	g        *Generator
	p        *Parent
	cur      currency
	gw       int
	amount   decimal.Decimal
	orderNo  string
	attempts int
	sandbox  bool
	forged   map[string]bool // children Ottu never made
}

func (c *parentCtx) money(d decimal.Decimal) string { return d.StringFixed(c.cur.decimals) }

// part returns percent % of the amount, rounded to the currency.
func (c *parentCtx) part(percent int64) decimal.Decimal {
	return c.amount.Mul(decimal.New(percent, -2)).Round(c.cur.decimals)
}

func (c *parentCtx) payment(state, result string, at time.Time, extra map[string]any) {
	m := c.paymentObject(state, result, at, extra)
	c.p.Webhooks = append(c.p.Webhooks, Webhook{Kind: events.KindPayment, Object: m, At: at})
}

func (c *parentCtx) paymentObject(state, result string, at time.Time, extra map[string]any) map[string]any {
	c.attempts++
	gw := gateways[c.gw]
	m := map[string]any{
		"amount": c.money(c.amount), "currency_code": c.cur.code, "session_id": c.p.SessionID, "order_no": c.orderNo,
		"reference_number": fmt.Sprintf("shop%s%d", c.p.SessionID[:20], c.attempts), "state": state, "result": result,
		"gateway_account": gw.account, "gateway_name": gw.name, "payment_type": "one_off", "is_sandbox": c.sandbox,
		"customer_email": "buyer" + c.p.SessionID[:4] + "@example.com", "customer_first_name": "Sara",
		"customer_last_name": "Al-Ali", "customer_phone": "+96550000001", "customer_id": "cust-" + c.p.SessionID[:5],
		"extra":          map[string]any{"merchant_id": "shop.ottu.net"},
		"fee":            c.money(decimal.Zero) + " " + c.cur.code,
		"amount_details": map[string]any{"amount": c.money(c.amount), "currency_code": c.cur.code, "fee": c.money(decimal.Zero), "total": c.money(c.amount)},
		"gateway_response": map[string]any{"result": map[bool]string{true: "SUCCESS", false: "FAILURE"}[result == "success"],
			"order": map[string]any{"id": c.orderNo, "currency": c.cur.code}},
		"pg_params":     map[string]any{"auth_code": "123456", "card_number": "512345******0008", "rrn": fmt.Sprintf("6%011d", c.g.rnd().IntN(1e11))},
		"initiator":     map[string]any{},
		"timestamp_utc": at.UTC().Format("2006-01-02 15:04:05"),
	}
	if state == events.StatePaid || state == events.StateAuthorized {
		m["settled_amount"] = c.money(c.amount)
		m["paid_amount"] = c.money(c.amount)
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// truth is Ottu's record of the parent once everything happened: its latest
// payment webhook (or, when none came, the paid payment Ottu has) listing
// every child Ottu made, at its latest state.
func (c *parentCtx) truth(now time.Time) map[string]any {
	var latest map[string]any
	var at time.Time
	for _, w := range c.p.Webhooks {
		if w.Kind == events.KindPayment && (latest == nil || !w.At.Before(at)) {
			latest, at = w.Object, w.At
		}
	}
	if latest == nil {
		latest = c.paymentObject("paid", "success", now.Add(-2*time.Hour), nil)
	}
	t := clone(latest)
	type child struct{ state, amount string }
	children, order := map[string]child{}, []string{}
	add := func(id string, ch child) {
		if id == "" || c.forged[id] {
			return
		}
		if _, ok := children[id]; !ok {
			order = append(order, id)
		}
		children[id] = ch
	}
	for _, w := range c.p.Webhooks {
		if txn, ok := w.Object["txn"].(map[string]any); ok {
			id, _ := txn["session_id"].(string)
			state, _ := txn["state"].(string)
			amount, _ := txn["amount"].(string)
			add(id, child{state, amount})
		}
	}
	for _, w := range c.p.Webhooks {
		list, _ := w.Object["transactions"].([]any)
		for _, item := range list {
			e, _ := item.(map[string]any)
			id, _ := e["session_id"].(string)
			if _, ok := children[id]; !ok {
				state, _ := e["state"].(string)
				add(id, child{state, c.money(c.part(10))})
			}
		}
	}
	var list []any
	for _, id := range order {
		list = append(list, map[string]any{"session_id": id, "state": children[id].state, "amount": children[id].amount,
			"currency_code": c.cur.code, "order_no": ""})
	}
	if len(list) > 0 {
		t["transactions"] = list
	}
	return t
}

// op adds an operation webhook and returns its child session id.
func (c *parentCtx) op(kind, state string, amount decimal.Decimal, at time.Time, mod func(m, txn map[string]any)) string {
	child := c.g.id("child")
	ref := c.g.ref("shop")
	txn := map[string]any{"amount": c.money(amount), "currency_code": c.cur.code, "order_no": "", "session_id": child, "state": state}
	m := map[string]any{
		"amount": c.money(amount), "operation": kind, "order_no": c.orderNo, "pg_code": gateways[c.gw].account,
		"reference_number": ref, "result": "success", "session_id": c.p.SessionID, "source": "input", "success": true,
		"is_sandbox": c.sandbox, "timestamp_utc": at.UTC().Format("2006-01-02 15:04:05"), "txn": txn,
		"pg_params":   map[string]any{"transaction_id": fmt.Sprint(c.g.rnd().IntN(1e7)), "result": "APPROVED"},
		"pg_response": map[string]any{"result": "SUCCESS"},
	}
	if mod != nil {
		mod(m, txn)
	}
	c.p.Webhooks = append(c.p.Webhooks, Webhook{Kind: events.KindOperation, Object: m, At: at})
	return child
}

// again re-sends webhook i later with changes (a queued refund's outcome, or a
// conflicting duplicate).
func (c *parentCtx) again(i int, at time.Time, mod func(m, txn map[string]any)) {
	m := clone(c.p.Webhooks[i].Object)
	m["timestamp_utc"] = at.UTC().Format("2006-01-02 15:04:05")
	txn, _ := m["txn"].(map[string]any)
	mod(m, txn)
	c.p.Webhooks = append(c.p.Webhooks, Webhook{Kind: c.p.Webhooks[i].Kind, Object: m, At: at})
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// Parent builds one parent of the given kind.
func (g *Generator) Parent(kind Kind) Parent {
	r := g.rnd()
	now := g.Now
	if now.IsZero() {
		now = time.Now().UTC()
	}
	grace := g.Grace
	if grace <= 0 {
		grace = 10 * time.Minute
	}
	p := Parent{Kind: kind, SessionID: g.id("session")}
	cur := currencies[r.IntN(len(currencies))]
	c := &parentCtx{g: g, p: &p, cur: cur, gw: r.IntN(len(gateways)), forged: map[string]bool{},
		amount: decimal.New(int64(5000+r.IntN(500000)), -cur.decimals).Round(cur.decimals), orderNo: "ORD-" + p.SessionID[:10]}
	// Most parents happened an hour or more ago: past any grace.
	t0 := now.Add(-time.Duration(60+r.IntN(600)) * time.Minute)
	step := func(n int) time.Time { return t0.Add(time.Duration(n) * 90 * time.Second) }
	p.Order = &Order{OrderNo: c.orderNo, Amount: c.money(c.amount), Currency: cur.code, UpdatedAt: t0}
	listed := func(children ...[2]string) []any { // child session id, state
		var out []any
		for _, ch := range children {
			out = append(out, map[string]any{"session_id": ch[0], "state": ch[1], "currency_code": cur.code, "order_no": ""})
		}
		return out
	}

	switch kind {
	case Purchase:
		c.payment("paid", "success", step(0), nil)
	case PendingThenPaid:
		c.payment("pending", "pending", step(0), nil)
		c.payment("paid", "success", step(1), nil)
	case FailedThenPaid:
		c.payment("failed", "failed", step(0), nil)
		c.payment("paid", "success", step(2), nil)
	case Failed:
		c.payment("failed", "failed", step(0), nil)
		p.Order = nil
	case PurchaseRefunded:
		c.payment("paid", "success", step(0), nil)
		a, b := c.part(25), c.part(50)
		c1 := c.op("refund", "refunded", a, step(1), nil)
		c2 := c.op("refund", "refunded", b, step(2), nil)
		c.payment("paid", "success", step(3), map[string]any{"refunded_amount": c.money(a.Add(b)),
			"transactions": listed([2]string{c1, "refunded"}, [2]string{c2, "refunded"})})
	case AuthCaptured:
		c.payment("authorized", "success", step(0), nil)
		a := c.part(40)
		c1 := c.op("capture", "paid", a, step(1), nil)
		c2 := c.op("capture", "paid", c.amount.Sub(a), step(2), nil)
		r1 := c.op("refund", "refunded", c.part(10), step(3), nil)
		c.payment("paid", "success", step(4), map[string]any{"refunded_amount": c.money(c.part(10)),
			"transactions": listed([2]string{c1, "paid"}, [2]string{c2, "paid"}, [2]string{r1, "refunded"})})
	case AuthVoided:
		c.payment("authorized", "success", step(0), nil)
		v := c.op("void", "voided", c.amount, step(1), nil)
		c.payment("authorized", "success", step(2), map[string]any{"voided_amount": c.money(c.amount),
			"transactions": listed([2]string{v, "voided"})})
	case QueuedRefundDone:
		c.payment("paid", "success", step(0), nil)
		c.op("refund", "refund_queued", c.part(30), step(1), nil)
		c.again(len(p.Webhooks)-1, step(5), func(_, txn map[string]any) { txn["state"] = "refunded" })
	case RecentListedChild:
		c.payment("paid", "success", now.Add(-grace/10), map[string]any{
			"transactions": listed([2]string{g.id("child"), "refunded"})})

	case Kind(ledger.OperationAmountMismatch):
		c.payment("paid", "success", step(0), nil)
		c.op("refund", "refunded", c.part(20), step(1), func(m, txn map[string]any) { txn["amount"] = c.money(c.part(19)) })
	case Kind(ledger.CurrencyMismatch):
		c.payment("paid", "success", step(0), nil)
		c.op("refund", "refunded", c.part(20), step(1), func(_, txn map[string]any) {
			txn["currency_code"] = map[bool]string{true: "USD", false: "EUR"}[cur.code != "USD"]
		})
	case Kind(ledger.OverCapture):
		c.payment("authorized", "success", step(0), nil)
		c.op("capture", "paid", c.part(70), step(1), nil)
		c.op("capture", "paid", c.part(50), step(2), nil)
	case Kind(ledger.OverRefund):
		// The second refund is a forgery (a signed refund body re-posted with
		// txn changed): Ottu's record does not list it.
		c.payment("paid", "success", step(0), nil)
		c.op("refund", "refunded", c.part(80), step(1), nil)
		c.forged[c.op("refund", "refunded", c.part(40), step(2), nil)] = true
	case Kind(ledger.VoidAfterCapture):
		c.payment("authorized", "success", step(0), nil)
		c.op("capture", "paid", c.part(30), step(1), nil)
		c.op("void", "voided", c.amount, step(2), nil)
	case Kind(ledger.VoidAmountMismatch):
		c.payment("authorized", "success", step(0), nil)
		c.op("void", "voided", c.part(60), step(1), nil)
	case Kind(ledger.OperationOnInvalidState):
		c.payment("paid", "success", step(0), nil)
		c.op("capture", "paid", c.part(50), step(1), nil)
	case Kind(ledger.ParentTotalsMismatch):
		c.payment("paid", "success", step(0), nil)
		a := c.part(20)
		c1 := c.op("refund", "refunded", a, step(1), nil)
		c.payment("paid", "success", step(2), map[string]any{"refunded_amount": c.money(a.Mul(decimal.NewFromInt(2))),
			"transactions": listed([2]string{c1, "refunded"})})
	case Kind(ledger.MissingOperation):
		c.payment("paid", "success", step(0), nil)
		c.payment("paid", "success", step(2), map[string]any{"transactions": listed([2]string{g.id("lost"), "refunded"})})
	case Kind(ledger.OrphanOperation):
		c.op("refund", "refunded", c.part(20), step(1), nil)
		p.Order = nil
	case Kind(ledger.PGSideOperation):
		c.payment("authorized", "success", step(0), nil)
		c.op("void", "voided", c.amount, step(1), func(m, _ map[string]any) { m["source"] = "pg" })
	case Kind(ledger.ConflictingDuplicate):
		c.payment("paid", "success", step(0), nil)
		c.op("refund", "refunded", c.part(20), step(1), nil)
		c.again(len(p.Webhooks)-1, step(2), func(m, txn map[string]any) {
			m["amount"], txn["amount"] = c.money(c.part(30)), c.money(c.part(30))
		})
	case Kind(ledger.StaleAuthorization):
		t := now.Add(-200 * time.Hour)
		c.payment("authorized", "success", t, nil)
	case Kind(ledger.StuckRefund):
		c.payment("paid", "success", now.Add(-60*time.Hour), nil)
		c.op("refund", "refund_queued", c.part(50), now.Add(-50*time.Hour), nil)
	case Kind(ledger.OrderAmountMismatch):
		c.payment("paid", "success", step(0), nil)
		p.Order.Amount = c.money(c.amount.Add(decimal.New(1, -cur.decimals+1)))
	case Kind(ledger.SandboxInLive):
		c.sandbox = true
		c.payment("paid", "success", step(0), nil)
	case Kind(ledger.ReplayedWebhook):
		// A gateway-side void re-posted, as someone holding the signed body
		// could, with source input: both findings stay raised.
		c.payment("authorized", "success", step(0), nil)
		c.op("void", "voided", c.amount, step(1), func(m, _ map[string]any) { m["source"] = "pg" })
		c.again(len(p.Webhooks)-1, step(2), func(m, _ map[string]any) { m["source"] = "input" })
		p.Expect = []ledger.Code{ledger.PGSideOperation, ledger.ReplayedWebhook}
	case Kind(ledger.UnreadableWebhook):
		// An authentic refund whose amount has more decimals than any
		// currency: kept raw, raised, never reconciled as an operation.
		c.payment("paid", "success", step(0), nil)
		c.op("refund", "refunded", c.part(10), step(1), func(m, txn map[string]any) {
			m["amount"], txn["amount"] = c.money(c.part(10))+"0000000001", c.money(c.part(10))+"0000000001"
		})
	default:
		panic("ottusim: unknown kind " + string(kind))
	}
	if !isClean(kind) && p.Expect == nil {
		p.Expect = []ledger.Code{ledger.Code(kind)}
	}
	p.Truth, p.Created = c.truth(now), t0
	return p
}

func isClean(k Kind) bool {
	for _, c := range CleanKinds {
		if c == k {
			return true
		}
	}
	return false
}

// Mix builds n parents, a fraction anomalyRate of them anomalies spread
// evenly over the sixteen codes, the rest clean, in random order. It leaves
// out RecentListedChild, whose "recent" depends on when the pass runs.
func (g *Generator) Mix(n int, anomalyRate float64) []Parent {
	r := g.rnd()
	out := make([]Parent, 0, n)
	anomalies := int(float64(n) * anomalyRate)
	for i := range n {
		var k Kind
		if i < anomalies {
			k = AnomalyKinds[i%len(AnomalyKinds)]
		} else {
			for k = RecentListedChild; k == RecentListedChild; {
				k = CleanKinds[r.IntN(len(CleanKinds))]
			}
		}
		out = append(out, g.Parent(k))
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
