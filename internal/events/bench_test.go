package events_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// BenchmarkVerifyDecode measures what ingest does per request: parse, verify
// (scheme A matches first) and decode, for the E1 payment webhook padded to a
// typical 1.5 KB with unsigned gateway fields.
//
//	go test -run=^$ -bench=VerifyDecode -benchmem ./internal/events
func BenchmarkVerifyDecode(b *testing.B) {
	body := typicalBody(b)
	keys := [][]byte{[]byte(exampleKey)}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := events.ParseObject(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := events.Verify(m, events.Signature(m, ""), keys); err != nil {
			b.Fatal(err)
		}
		if _, err := events.DecodeObject(m); err != nil {
			b.Fatal(err)
		}
		_ = events.DeliveryID(events.KindPayment, m)
	}
}

func typicalBody(tb testing.TB) []byte {
	m := mustObject(tb, string(mustReadFile(tb, "e1_payment_paid.json")))
	m["gateway_response"] = map[string]any{
		"result": "SUCCESS", "gatewayCode": "APPROVED", "merchant": "TESTSHOP01",
		"order":         map[string]any{"id": "shopA7K2Q", "amount": "25.5", "currency": "KWD", "status": "CAPTURED", "totalCapturedAmount": "25.5"},
		"transaction":   map[string]any{"id": "1", "type": "PAYMENT", "receipt": "612345678901", "acquirer": map[string]any{"batch": "20260514", "id": "KNET_S2I", "merchantId": "1234567"}},
		"sourceOfFunds": map[string]any{"type": "CARD", "provided": map[string]any{"card": map[string]any{"brand": "MASTERCARD", "number": "512345xxxxxx0008", "expiry": map[string]any{"month": "1", "year": "39"}}}},
	}
	b, err := jsonMarshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkSteps measures each step of BenchmarkVerifyDecode alone, on the
// same body.
//
//	go test -run=^$ -bench=Steps -benchmem ./internal/events
func BenchmarkSteps(b *testing.B) {
	body := typicalBody(b)
	keys := [][]byte{[]byte(exampleKey)}
	m, err := events.ParseObject(body)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range []struct {
		name string
		fn   func() error
	}{
		{"check-shape", func() error { return events.CheckShape(body) }},
		{"parse", func() error { _, err := events.ParseObject(body); return err }},
		{"verify", func() error { _, err := events.Verify(m, events.Signature(m, ""), keys); return err }},
		{"decode", func() error { _, err := events.DecodeObject(m); return err }},
		{"delivery-id", func() error { _ = events.DeliveryID(events.KindPayment, m); return nil }},
		// The first versions, for comparison: the shape check on encoding/json's
		// tokens, the delivery id over json.Marshal.
		{"check-shape-tokens", func() error { return checkShapeTokens(body) }},
		{"delivery-id-json-marshal", func() error {
			canon, err := json.Marshal(m)
			sum := sha256.Sum256(append([]byte("payment\x00"), canon...))
			_ = hex.EncodeToString(sum[:16])
			return err
		}},
	} {
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
