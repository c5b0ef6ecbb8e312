package events_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

func addSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{}`, `[]`, `{"session_id":"s","state":"paid","amount":1e400}`,
		`{"reference_number":"r","txn":{"amount":"-0.000"}}`, `{"session_id":1,"state":true}`,
		`{"token":{"token":null},"extra":[1],"agreement":"x","session_id":"s","state":"paid"}`} {
		f.Add([]byte(s))
	}
}

// FuzzDecode: decoding never panics; what decodes has a kind and its object;
// a decoded webhook re-verifies with the signature Sign computes for it.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	key := [][]byte{[]byte("fuzz-key")}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := events.ParseObject(body)
		if err != nil {
			return
		}
		id := events.DeliveryID(events.KindPayment, m)
		if len(id) != 32 {
			t.Fatalf("delivery id %q", id)
		}
		for _, scheme := range []events.Scheme{events.SchemeA, events.SchemeB} {
			sig := events.Sign(m, scheme, key[0])
			if _, err := events.Verify(m, sig, key); err != nil {
				t.Fatalf("own signature (scheme %s) does not verify: %v", scheme, err)
			}
		}
		w, err := events.DecodeObject(m)
		if err != nil {
			return
		}
		if (w.Kind == events.KindPayment) != (w.Payment != nil) || (w.Kind == events.KindOperation) != (w.Operation != nil) {
			t.Fatalf("kind %s with payment=%v operation=%v", w.Kind, w.Payment != nil, w.Operation != nil)
		}
	})
}

// FuzzVerify: an arbitrary signature never verifies against the examples, and
// never panics.
func FuzzVerify(f *testing.F) {
	f.Add("e2200e82da64772f34c5f4a77bf0fc4390f2e9c2857d2c156ceca58a4e5725b8")
	f.Add("")
	f.Add("zz")
	m := mustObject(f, string(mustReadFile(f, "e1_payment_paid.json")))
	key := [][]byte{[]byte(exampleKey)}
	valid := map[string]bool{
		"e2200e82da64772f34c5f4a77bf0fc4390f2e9c2857d2c156ceca58a4e5725b9": true,
		"d660cab9e151b9689ebda1d26bcdf54132860bdcf3a3576087447b06948963ac": true,
	}
	f.Fuzz(func(t *testing.T, sig string) {
		_, err := events.Verify(m, sig, key)
		if err == nil && !valid[lower(sig)] {
			t.Fatalf("signature %q verified", sig)
		}
	})
}
