package events_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

const exampleKey = "example-hmac-key-not-real" // docs/ottu-webhooks.md, "Example payloads"

func mustObject(tb testing.TB, body string) map[string]any {
	tb.Helper()
	m, err := events.ParseObject([]byte(body))
	if err != nil {
		tb.Fatalf("ParseObject: %v", err)
	}
	return m
}

func mustReadFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestSign_Vectors checks every published test vector of docs/ottu-webhooks.md §3 and
// the scheme B values given for the three example payloads.
func TestSign_Vectors(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		body   string
		scheme events.Scheme
		want   string
	}{
		{"A/docs 86.000", "pu9MpX3yPR", `{"amount":"86.000","currency_code":"KWD","customer_first_name":"example-customer"}`,
			events.SchemeA, "6143b8ad4bd283540721ab000f6de746e722231aaaa90bc38f639081d3ff9f67"},
		{"A/clarified rewrite", "pu9MpX3yPR", `{"amount":"86.000","currency_code":"KWD","customer_first_name":"example-customer",
			"customer_last_name":"","customer_email":"customer@example.com","gateway_name":"kpay","gateway_account":"knet",
			"order_no":"ORDER-1001","reference_number":"ABC12","result":"success",
			"session_id":"0123456789abcdef0123456789abcdef01234567","state":"paid"}`,
			events.SchemeA, "29e70de083707b3a738e9d5f4df4e4481d082c4614db97a55f50d4b4583dc5f2"},
		{"A/old page 86.00", "3323232", `{"amount":"86.00","currency_code":"KWD","customer_first_name":"kenana"}`,
			events.SchemeA, "5ea4c38edb1133e6ea5ba25322ce486c435ab04f14f20dae056a09e14946847a"},
		{"B/autopay", "pu9MpX3yPR", string(mustReadFile(t, "vector_b_autopay.json")),
			events.SchemeB, "4ea44c61554e6b64feeb82e6bfc724dc1c46bf183596f5375f5cb12cca14b7ef"},
		{"A/E1", exampleKey, string(mustReadFile(t, "e1_payment_paid.json")),
			events.SchemeA, "e2200e82da64772f34c5f4a77bf0fc4390f2e9c2857d2c156ceca58a4e5725b9"},
		{"B/E1", exampleKey, string(mustReadFile(t, "e1_payment_paid.json")),
			events.SchemeB, "d660cab9e151b9689ebda1d26bcdf54132860bdcf3a3576087447b06948963ac"},
		{"A/E2", exampleKey, string(mustReadFile(t, "e2_operation_refund.json")),
			events.SchemeA, "290c73da06a9d3d5ec226c538203f2ee9f74bd63b6d15df6e8b9d31729e31b68"},
		{"B/E2", exampleKey, string(mustReadFile(t, "e2_operation_refund.json")),
			events.SchemeB, "d63b8621a3ae7ef667af2b07b8bdcdae89e0a9620b3cd39b21b3674be999d05a"},
		{"A/E3", exampleKey, string(mustReadFile(t, "e3_operation_void_pg.json")),
			events.SchemeA, "e59a7662e76b09be99a6f48e51c8214528e45db9f9d2b6fd65b7772061939599"},
		{"B/E3", exampleKey, string(mustReadFile(t, "e3_operation_void_pg.json")),
			events.SchemeB, "d9782bef63828c9f574a3a19f3e505f9b387e7b475bcd316844a36395f94fc4f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustObject(t, tt.body)
			if got := events.Sign(m, tt.scheme, []byte(tt.key)); got != tt.want {
				t.Fatalf("Sign: got %s, want %s", got, tt.want)
			}
			got, err := events.Verify(m, tt.want, [][]byte{[]byte("other-key"), []byte(tt.key)})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Scheme != tt.scheme || got.KeyIndex != 1 {
				t.Fatalf("Verify: got %+v, want scheme %s key 1", got, tt.scheme)
			}
		})
	}
}

func TestVerify_Err(t *testing.T) {
	e1 := string(mustReadFile(t, "e1_payment_paid.json"))
	key := [][]byte{[]byte(exampleKey)}
	sigE1 := "e2200e82da64772f34c5f4a77bf0fc4390f2e9c2857d2c156ceca58a4e5725b9"
	tests := []struct {
		name string
		body string
		sig  string
		keys [][]byte
		want error
	}{
		{"ErrMissingSignature", e1, "", key, events.ErrMissingSignature},
		{"ErrNoKeys", e1, sigE1, nil, events.ErrNoKeys},
		{"ErrBadSignature/wrong key", e1, sigE1, [][]byte{[]byte("nope")}, events.ErrBadSignature},
		{"ErrBadSignature/not hex", e1, "zz", key, events.ErrBadSignature},
		{"ErrBadSignature/short", e1, sigE1[:62], key, events.ErrBadSignature},
		{"ErrBadSignature/signed field changed", replace(t, e1, `"amount": "25.500"`, `"amount": "25.50"`), sigE1, key, events.ErrBadSignature},
		{"ErrBadSignature/state changed", replace(t, e1, `"state": "paid"`, `"state": "authorized"`), sigE1, key, events.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := events.Verify(mustObject(t, tt.body), tt.sig, tt.keys)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestVerify_Unsigned shows that unsigned fields, key order and whitespace do
// not matter (§3.1), and that decoded values are hashed, not JSON text (§3.7).
func TestVerify_Unsigned(t *testing.T) {
	key := [][]byte{[]byte("pu9MpX3yPR")}
	want := "6143b8ad4bd283540721ab000f6de746e722231aaaa90bc38f639081d3ff9f67"
	for _, body := range []string{
		`{"customer_first_name":"example-customer","currency_code":"KWD","amount":"86.000","fee":"1.000 KWD","customer_id":"x"}`,
		"{\n  \"amount\" : \"86.000\",\"currency_code\":\"\\u004bWD\",\"customer_first_name\":\"example-customer\",\"order_no\":null,\"state\":\"\"}",
	} {
		if _, err := events.Verify(mustObject(t, body), want, key); err != nil {
			t.Errorf("Verify(%s): %v", body, err)
		}
	}
}

// TestVerify_NonString covers §8.2: a signed field that arrives as a number or a
// bool verifies under the SDK rendering (Python str) and the docs' variants.
func TestVerify_NonString(t *testing.T) {
	key := []byte("k")
	m := mustObject(t, `{"amount":86.5,"currency_code":"KWD","order_no":0,"session_id":"s","state":"paid"}`)
	for _, scheme := range []events.Scheme{events.SchemeA, events.SchemeB} {
		sig := events.Sign(m, scheme, key)
		got, err := events.Verify(m, sig, [][]byte{key})
		if err != nil || got.Scheme != scheme {
			t.Fatalf("scheme %s: got %+v, %v", scheme, got, err)
		}
	}
	// Truthiness variant of scheme A: order_no 0 is skipped.
	msg := "amount86.5currency_codeKWDstatepaid"
	if got := hmacHex(key, msg); !verifies(m, got, key) {
		t.Fatalf("falsy-skipping variant of scheme A not accepted")
	}
}

func TestSignature(t *testing.T) {
	m := mustObject(t, `{"signature":"abc"}`)
	if got := events.Signature(m, "hdr"); got != "abc" {
		t.Fatalf("body: got %q, want abc", got)
	}
	if got := events.Signature(mustObject(t, `{}`), " hdr "); got != "hdr" {
		t.Fatalf("header: got %q, want hdr", got)
	}
}

func replace(tb testing.TB, s, old, new string) string {
	tb.Helper()
	out := stringsReplaceOnce(s, old, new)
	if out == s {
		tb.Fatalf("%q not found", old)
	}
	return out
}
