package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Kind is the kind of an Ottu webhook.
type Kind string

// The two kinds of webhook Ottu sends (§1, §2).
const (
	KindPayment   Kind = "payment"
	KindOperation Kind = "operation"
)

// Payment is a payment event webhook (§1.2): the parent transaction, identified
// by SessionID, at the state this delivery reports.
type Payment struct {
	SessionID       string
	OrderNo         string
	ReferenceNumber string // per payment attempt (§8.15)
	State           string // parent state (§4.1)
	Result          string // attempt outcome
	Amount          Amount
	CurrencyCode    string
	GatewayAccount  string
	GatewayName     string
	PaymentType     string
	IsSandbox       bool
	PaidAmount      Amount
	SettledAmount   Amount
	RefundedAmount  Amount
	VoidedAmount    Amount
	RemainingAmount Amount
	Timestamp       time.Time // timestamp_utc; zero when absent
	Transactions    []Child   // transactions[]: the children operations created
}

// Child is one entry of a payment webhook's transactions[] (§1.2).
type Child struct {
	SessionID    string `json:"session_id"`
	State        string `json:"state"`
	Amount       Amount `json:"amount"`
	CurrencyCode string `json:"currency_code"`
	OrderNo      string `json:"order_no"`
}

// Operation is an operations webhook (§2.2): a capture, refund or void of the
// parent SessionID, identified by its own ReferenceNumber, creating the child Txn.
type Operation struct {
	ReferenceNumber string // identity of the operation
	SessionID       string // the parent
	OrderNo         string // the parent's order_no
	Operation       string // capture, refund, void; may be empty (§8.8)
	Source          string // input or pg
	Result          string
	Success         bool
	PGCode          string
	Amount          Amount
	IsSandbox       bool
	Timestamp       time.Time
	Txn             Txn
}

// Txn is the child transaction an operation created (§2.2).
type Txn struct {
	SessionID    string
	State        string // paid, refunded, refund_queued, refund_rejected, voided
	Amount       Amount
	CurrencyCode string
	OrderNo      string
}

// Webhook is one decoded delivery. Exactly one of Payment and Operation is set,
// as Kind says. Fields holds the whole decoded object, unknown fields included,
// with numbers as json.Number.
type Webhook struct {
	Kind      Kind
	Payment   *Payment
	Operation *Operation
	Fields    map[string]any
}

// ParseObject decodes body as one JSON object, keeping numbers as their exact
// text (json.Number), as signature verification requires (§3.7).
func ParseObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotObject, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrNotObject)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrNotObject
	}
	return m, nil
}

// KindOf tells which webhook m is. An operation webhook has a txn object or an
// operation field (§2.2); a payment webhook has state and session_id (§1.2).
func KindOf(m map[string]any) (Kind, error) {
	_, hasTxn := m["txn"].(map[string]any)
	_, hasOp := m["operation"]
	switch {
	case hasTxn || (hasOp && m["state"] == nil):
		return KindOperation, nil
	case m["state"] != nil && m["session_id"] != nil:
		return KindPayment, nil
	}
	return "", ErrUnknownKind
}

// DecodeObject decodes an object returned by ParseObject. It is tolerant of what
// Ottu really sends (§8): every field is optional, amounts may be strings or
// numbers, text fields may arrive as numbers. It refuses only values that would
// make the stored record wrong: an amount that is not a decimal, a timestamp in
// no known format, a webhook without the id that joins it to anything.
func DecodeObject(m map[string]any) (*Webhook, error) {
	kind, err := KindOf(m)
	if err != nil {
		return nil, err
	}
	d := decoder{m: m}
	w := &Webhook{Kind: kind, Fields: m}
	switch kind {
	case KindPayment:
		p := &Payment{
			SessionID:       d.text(m, "session_id"),
			OrderNo:         d.text(m, "order_no"),
			ReferenceNumber: d.text(m, "reference_number"),
			State:           d.text(m, "state"),
			Result:          d.text(m, "result"),
			Amount:          d.amount(m, "amount", ""),
			CurrencyCode:    d.text(m, "currency_code"),
			GatewayAccount:  d.text(m, "gateway_account"),
			GatewayName:     d.text(m, "gateway_name"),
			PaymentType:     d.text(m, "payment_type"),
			IsSandbox:       d.boolean(m, "is_sandbox"),
			PaidAmount:      d.amount(m, "paid_amount", ""),
			SettledAmount:   d.amount(m, "settled_amount", ""),
			RefundedAmount:  d.amount(m, "refunded_amount", ""),
			VoidedAmount:    d.amount(m, "voided_amount", ""),
			RemainingAmount: d.amount(m, "remaining_amount", ""),
			Timestamp:       d.timestamp(m, "timestamp_utc"),
		}
		if list, ok := m["transactions"].([]any); ok {
			for i, item := range list {
				c, ok := item.(map[string]any)
				if !ok {
					continue
				}
				p.Transactions = append(p.Transactions, Child{
					SessionID:    d.text(c, "session_id"),
					State:        d.text(c, "state"),
					Amount:       d.amount(c, "amount", "transactions["+strconv.Itoa(i)+"]."),
					CurrencyCode: d.text(c, "currency_code"),
					OrderNo:      d.text(c, "order_no"),
				})
			}
		}
		if p.SessionID == "" {
			d.fail("session_id", fmt.Errorf("empty"))
		}
		w.Payment = p
	case KindOperation:
		o := &Operation{
			ReferenceNumber: d.text(m, "reference_number"),
			SessionID:       d.text(m, "session_id"),
			OrderNo:         d.text(m, "order_no"),
			Operation:       d.text(m, "operation"),
			Source:          d.text(m, "source"),
			Result:          d.text(m, "result"),
			Success:         d.boolean(m, "success"),
			PGCode:          d.text(m, "pg_code"),
			Amount:          d.amount(m, "amount", ""),
			IsSandbox:       d.boolean(m, "is_sandbox"),
			Timestamp:       d.timestamp(m, "timestamp_utc"),
		}
		if t, ok := m["txn"].(map[string]any); ok {
			o.Txn = Txn{
				SessionID:    d.text(t, "session_id"),
				State:        d.text(t, "state"),
				Amount:       d.amount(t, "amount", "txn."),
				CurrencyCode: d.text(t, "currency_code"),
				OrderNo:      d.text(t, "order_no"),
			}
		}
		if o.ReferenceNumber == "" {
			d.fail("reference_number", fmt.Errorf("empty"))
		}
		w.Operation = o
	}
	if d.err != nil {
		return nil, d.err
	}
	return w, nil
}

// decoder reads fields from a decoded object and remembers the first error.
type decoder struct {
	m   map[string]any
	err error
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = &FieldError{Field: field, Err: err}
	}
}

// text renders a scalar as text. Strings are kept exactly; numbers keep their
// JSON text; null and absent are "".
func (d *decoder) text(m map[string]any, key string) string {
	switch x := m[key].(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func (d *decoder) boolean(m map[string]any, key string) bool {
	switch x := m[key].(type) {
	case bool:
		return x
	case string:
		b, _ := strconv.ParseBool(strings.TrimSpace(x))
		return b
	case json.Number:
		return x.String() != "0"
	}
	return false
}

func (d *decoder) amount(m map[string]any, key, prefix string) Amount {
	a, err := amountValue(m[key])
	if err != nil {
		d.fail(prefix+key, err)
	}
	return a
}

func (d *decoder) timestamp(m map[string]any, key string) time.Time {
	s := d.text(m, key)
	if s == "" {
		return time.Time{}
	}
	t, err := ParseTimestamp(s)
	if err != nil {
		d.fail(key, err)
	}
	return t
}

// timestampLayouts are the formats timestamp_utc arrives in (§1.2, §8.14): the
// documented "YYYY-MM-DD HH:MM:SS" (UTC, no zone) and RFC 3339 date-time.
var timestampLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999", // date-time without a zone: UTC
	"2006-01-02 15:04:05.999999999Z07:00",
}

// The range of timestamps the store holds (ClickHouse DateTime: 1970 to
// 2106; the product promises 1970–2105).
var (
	MinTimestamp = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTimestamp = time.Date(2105, 12, 31, 23, 59, 59, 0, time.UTC)
)

// ParseTimestamp parses timestamp_utc in any documented format and returns it
// in UTC (an offset, when one is given, is converted). A time outside
// MinTimestamp..MaxTimestamp is an error: the store cannot hold it.
func ParseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range timestampLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			if t.Before(MinTimestamp) || t.After(MaxTimestamp) {
				return time.Time{}, fmt.Errorf("outside %d–%d: %q", MinTimestamp.Year(), MaxTimestamp.Year(), s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a known timestamp format: %q", s)
}
