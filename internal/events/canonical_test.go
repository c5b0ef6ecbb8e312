package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCanonical: for any object ParseObject reads, canonical writes exactly
// the bytes json.Marshal writes, so delivery ids stay what they were.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{
		`{"a":"<b>&c\u2028\u2029\"\\\/\b\f\n\r\t\u0001\u001f\u007f","z":[1,2.50,-3e10,true,false,null,{}],"é":"ü\ud800"}`,
		`{"amount":"25.500","n":0.1000,"nested":{"y":[],"x":{"k":"v"}},"":""}`,
		"{\"bad\":\"\xff\xfe\",\"k\\u00e9\":\"\xe2\x80\xa8\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseObject(body)
		if err != nil {
			return
		}
		want, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := canonical(nil, m); string(got) != string(want) {
			t.Fatalf("canonical:\n%s\njson.Marshal:\n%s", got, want)
		}
	})
}

// TestDeliveryID_Unchanged: on every example webhook the id is the one the
// first version derived, over json.Marshal's re-encoding.
func TestDeliveryID_Unchanged(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseObject(b)
		if err != nil {
			t.Fatal(err)
		}
		canon, _ := json.Marshal(m)
		sum := sha256.Sum256(append([]byte("payment\x00"), canon...))
		if got, want := DeliveryID(KindPayment, m), hex.EncodeToString(sum[:16]); got != want {
			t.Errorf("%s: delivery id %s, first version %s", name, got, want)
		}
	}
}
