package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

func TestDecode_Examples(t *testing.T) {
	w, err := decode(mustReadFile(t, "e1_payment_paid.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := w.Payment
	if w.Kind != events.KindPayment || p == nil {
		t.Fatalf("kind: got %s", w.Kind)
	}
	if p.SessionID != "3f6c0a9e5b1d4c2a8e7f90b1c2d3e4f5a6b7c8d9" || p.State != "paid" || p.Result != "success" ||
		p.CurrencyCode != "KWD" || p.OrderNo != "ORD-2026-0001" || p.GatewayAccount != "credit-card" || p.GatewayName != "mpgs" {
		t.Fatalf("payment fields: got %+v", p)
	}
	if !p.Amount.Equal(amt("25.5")) || p.Amount.String() != "25.5" {
		t.Fatalf("amount: got %s, want 25.5", p.Amount)
	}
	if want := time.Date(2026, 5, 14, 10, 22, 31, 0, time.UTC); !p.Timestamp.Equal(want) {
		t.Fatalf("timestamp: got %s, want %s", p.Timestamp, want)
	}
	if _, ok := w.Fields["gateway_response"]; !ok {
		t.Fatal("unknown fields must be kept")
	}

	w, err = decode(mustReadFile(t, "e2_operation_refund.json"))
	if err != nil {
		t.Fatal(err)
	}
	o := w.Operation
	if w.Kind != events.KindOperation || o == nil {
		t.Fatalf("kind: got %s", w.Kind)
	}
	if o.ReferenceNumber != "shopR9X4M" || o.SessionID != "3f6c0a9e5b1d4c2a8e7f90b1c2d3e4f5a6b7c8d9" ||
		o.Operation != "refund" || o.Source != "input" || !o.Success ||
		o.Txn.SessionID != "8a1b2c3d4e5f60718293a4b5c6d7e8f901234567" || o.Txn.State != "refunded" ||
		o.Txn.CurrencyCode != "KWD" || !o.Txn.Amount.Equal(amt("5")) {
		t.Fatalf("operation fields: got %+v", o)
	}

	w, err = decode(mustReadFile(t, "e3_operation_void_pg.json"))
	if err != nil {
		t.Fatal(err)
	}
	if w.Operation.Source != "pg" || w.Operation.Operation != "void" || w.Operation.Txn.State != "voided" {
		t.Fatalf("E3: got %+v", w.Operation)
	}
}

func TestDecode_Tolerant(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(*events.Webhook) bool
	}{
		{"number amounts", `{"session_id":"s","state":"paid","amount":25.5,"refunded_amount":0,"paid_amount":"30.000"}`,
			func(w *events.Webhook) bool {
				p := w.Payment
				return p.Amount.Equal(amt("25.500")) && p.RefundedAmount.Valid && p.RefundedAmount.Decimal.IsZero() &&
					p.PaidAmount.String() == "30"
			}},
		{"empty and null amounts are absent", `{"session_id":"s","state":"paid","amount":"","voided_amount":null}`,
			func(w *events.Webhook) bool { return !w.Payment.Amount.Valid && !w.Payment.VoidedAmount.Valid }},
		{"RFC 3339 timestamp", `{"session_id":"s","state":"paid","timestamp_utc":"2026-05-14T13:22:31+03:00"}`,
			func(w *events.Webhook) bool {
				return w.Payment.Timestamp.Equal(time.Date(2026, 5, 14, 10, 22, 31, 0, time.UTC))
			}},
		{"zone-less T timestamp with fraction", `{"session_id":"s","state":"paid","timestamp_utc":"2026-05-14T10:22:31.5"}`,
			func(w *events.Webhook) bool {
				return w.Payment.Timestamp.Equal(time.Date(2026, 5, 14, 10, 22, 31, 5e8, time.UTC))
			}},
		{"numeric order_no", `{"session_id":"s","state":"paid","order_no":12345}`,
			func(w *events.Webhook) bool { return w.Payment.OrderNo == "12345" }},
		{"transactions", `{"session_id":"s","state":"paid","transactions":[{"session_id":"c1","state":"refunded","amount":"1.000","currency_code":"KWD"},"junk"]}`,
			func(w *events.Webhook) bool {
				tx := w.Payment.Transactions
				return len(tx) == 1 && tx[0].SessionID == "c1" && tx[0].Amount.Equal(amt("1"))
			}},
		{"operation null (documented refund example)", `{"operation":null,"reference_number":"r","session_id":"s","txn":{"state":"refunded","amount":"9.000"}}`,
			func(w *events.Webhook) bool { return w.Kind == events.KindOperation && w.Operation.Operation == "" }},
		{"payment with a prose operation field", `{"operation":"payment","session_id":"s","state":"paid"}`,
			func(w *events.Webhook) bool { return w.Kind == events.KindPayment }},
		{"3-decimal and 2-decimal exactness", `{"reference_number":"r","txn":{"amount":"0.105","currency_code":"BHD"},"amount":0.105}`,
			func(w *events.Webhook) bool {
				return w.Operation.Txn.Amount.String() == "0.105" && w.Operation.Amount.Equal(w.Operation.Txn.Amount)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := decode([]byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !tt.check(w) {
				t.Fatalf("unexpected decode: %+v %+v", w.Payment, w.Operation)
			}
		})
	}
}

func TestDecode_Err(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"ErrNotObject/array", `[1,2]`, events.ErrNotObject},
		{"ErrNotObject/string", `"x"`, events.ErrNotObject},
		{"ErrNotObject/truncated", `{"session_id":"s","sta`, events.ErrNotObject},
		{"ErrNotObject/trailing", `{"session_id":"s","state":"paid"} {}`, events.ErrNotObject},
		{"ErrNotObject/empty", ``, events.ErrNotObject},
		{"ErrUnknownKind", `{"hello":"world"}`, events.ErrUnknownKind},
		{"ErrUnknownKind/state only", `{"state":"paid"}`, events.ErrUnknownKind},
		{"ErrInvalidField/amount", `{"session_id":"s","state":"paid","amount":"ten"}`, events.ErrInvalidField},
		{"ErrInvalidField/amount object", `{"session_id":"s","state":"paid","amount":{}}`, events.ErrInvalidField},
		{"ErrInvalidField/too many decimals", `{"session_id":"s","state":"paid","amount":"1.123456789"}`, events.ErrInvalidField},
		{"ErrInvalidField/txn amount", `{"reference_number":"r","txn":{"amount":"1,5"}}`, events.ErrInvalidField},
		{"ErrInvalidField/timestamp", `{"session_id":"s","state":"paid","timestamp_utc":"yesterday"}`, events.ErrInvalidField},
		{"ErrInvalidField/no reference_number", `{"operation":"refund","txn":{}}`, events.ErrInvalidField},
		{"ErrInvalidField/empty session_id", `{"session_id":"","state":"paid"}`, events.ErrInvalidField},
		// What the store cannot hold exactly: Decimal(38, 8), DateTime 1970-2105.
		{"ErrInvalidField/10 decimals", `{"session_id":"s","state":"paid","amount":"25.5000000001"}`, events.ErrInvalidField},
		{"ErrInvalidField/negative", `{"session_id":"s","state":"paid","amount":"-25.500"}`, events.ErrInvalidField},
		{"ErrInvalidField/negative number", `{"session_id":"s","state":"paid","refunded_amount":-1}`, events.ErrInvalidField},
		{"ErrInvalidField/31 integer digits", `{"session_id":"s","state":"paid","amount":"1000000000000000000000000000000"}`, events.ErrInvalidField},
		{"ErrInvalidField/35 digits", `{"session_id":"s","state":"paid","amount":"99999999999999999999999999999999999"}`, events.ErrInvalidField},
		{"ErrInvalidField/exponent", `{"session_id":"s","state":"paid","amount":1e40}`, events.ErrInvalidField},
		{"ErrInvalidField/1969", `{"session_id":"s","state":"paid","timestamp_utc":"1969-12-31 23:59:59"}`, events.ErrInvalidField},
		{"ErrInvalidField/2106", `{"session_id":"s","state":"paid","timestamp_utc":"2106-01-01 00:00:00"}`, events.ErrInvalidField},
		{"ErrInvalidField/offset into 1969", `{"session_id":"s","state":"paid","timestamp_utc":"1970-01-01T01:00:00+02:00"}`, events.ErrInvalidField},
		{"ErrInvalidField/child amount", `{"session_id":"s","state":"paid","transactions":[{"amount":"-1"}]}`, events.ErrInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode([]byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDecode_Bounds: the largest values the store holds are read; offsets
// convert to UTC.
func TestDecode_Bounds(t *testing.T) {
	w, err := decode([]byte(`{"session_id":"s","state":"paid","amount":"999999999999999999999999999999.99999999",` +
		`"settled_amount":"1.0000000000","paid_amount":0,"timestamp_utc":"2026-05-14T13:22:31+03:00"}`))
	if err != nil {
		t.Fatal(err)
	}
	p := w.Payment
	if p.Amount.String() != "999999999999999999999999999999.99999999" || p.SettledAmount.String() != "1" || p.PaidAmount.String() != "0" {
		t.Fatalf("amounts: %s %s %s", p.Amount, p.SettledAmount, p.PaidAmount)
	}
	if want := time.Date(2026, 5, 14, 10, 22, 31, 0, time.UTC); !p.Timestamp.Equal(want) || p.Timestamp.Location() != time.UTC {
		t.Fatalf("timestamp %s, want %s", p.Timestamp, want)
	}
	for _, edge := range []string{"1970-01-01 00:00:00", "2105-12-31 23:59:59"} {
		if _, err := events.ParseTimestamp(edge); err != nil {
			t.Errorf("%s: %v", edge, err)
		}
	}
}

func TestSalvage(t *testing.T) {
	m := mustObject(t, `{"session_id":"s1","state":"paid","amount":"-1"}`)
	_, err := events.DecodeObject(m)
	u := events.Salvage(m, err)
	if u.Kind != events.KindPayment || u.SessionID != "s1" || u.Field != "amount" || !strings.Contains(u.Reason, "negative") {
		t.Fatalf("got %+v", u)
	}
	m = mustObject(t, `{"state":"paid","amount":"1"}`) // no session_id
	_, err = events.DecodeObject(m)
	if u = events.Salvage(m, err); u.Kind != events.KindPayment || u.SessionID != "" {
		t.Fatalf("got %+v", u)
	}
	m = mustObject(t, `{"amount":"1","hello":"x"}`)
	_, err = events.DecodeObject(m)
	if u = events.Salvage(m, err); u.Kind != events.KindUnreadable {
		t.Fatalf("got %+v", u)
	}
}

func TestAmount_Equal(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"5.000", "5", true},
		{"5.000", "5.00", true},
		{"0.1", "0.10", true},
		{"5.001", "5", false},
		{"", "", true},
		{"", "0", false},
	}
	for _, tt := range tests {
		if got := amt(tt.a).Equal(amt(tt.b)); got != tt.want {
			t.Errorf("%q == %q: got %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestDeliveryID(t *testing.T) {
	a := mustObject(t, `{"state":"paid","session_id":"s","amount":"1.000"}`)
	b := mustObject(t, "{ \"amount\" : \"1.000\",\n\"session_id\":\"s\", \"state\":\"paid\" }")
	c := mustObject(t, `{"state":"paid","session_id":"s","amount":"1.00"}`)
	idA := events.DeliveryID(events.KindPayment, a)
	if len(idA) != 32 {
		t.Fatalf("len: got %d, want 32", len(idA))
	}
	if got := events.DeliveryID(events.KindPayment, b); got != idA {
		t.Fatalf("re-serialized delivery: got %s, want %s", got, idA)
	}
	if got := events.DeliveryID(events.KindPayment, c); got == idA {
		t.Fatal("different amount text must give a different id")
	}
	if got := events.DeliveryID(events.KindOperation, a); got == idA {
		t.Fatal("kind must be part of the id")
	}
	if events.RejectedID([]byte("x"), "r1") == events.RejectedID([]byte("x"), "r2") {
		t.Fatal("reason must be part of the rejected id")
	}
}

func TestAmount_Format(t *testing.T) {
	tests := []struct{ amount, code, want string }{
		{"25.5", "KWD", "25.500 KWD"},
		{"25.50000000", "USD", "25.50 USD"},
		{"1000", "JPY", "1000 JPY"},
		{"0.105", "USD", "0.105 USD"}, // more decimals than the currency has: shown exactly
		{"7", "", "7.00"},
		{"", "KWD", "(none)"},
	}
	for _, tt := range tests {
		if got := amt(tt.amount).Format(tt.code); got != tt.want {
			t.Errorf("Format(%q, %q): got %q, want %q", tt.amount, tt.code, got, tt.want)
		}
	}
}

// decode parses body and decodes it as a payment or an operation webhook.
func decode(body []byte) (*events.Webhook, error) {
	m, err := events.ParseObject(body)
	if err != nil {
		return nil, err
	}
	return events.DecodeObject(m)
}
