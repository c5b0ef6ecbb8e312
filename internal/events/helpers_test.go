package events_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

func hmacHex(key []byte, msg string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg))
	return hex.EncodeToString(mac.Sum(nil))
}

func verifies(m map[string]any, sig string, key []byte) bool {
	_, err := events.Verify(m, sig, [][]byte{key})
	return err == nil
}

func stringsReplaceOnce(s, old, new string) string { return strings.Replace(s, old, new, 1) }

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// amt is the amount s, a valid constant of the test.
func amt(s string) events.Amount { a, _ := events.ParseAmount(s); return a }
