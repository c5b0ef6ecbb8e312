package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// Scheme names a signature canonicalization (§3).
type Scheme string

// The two documented schemes (§3.2, §3.3).
const (
	SchemeA Scheme = "A" // 18 flat fields, name+value, no separator
	SchemeB Scheme = "B" // 26 dotted paths, path=value, joined with "\n"
)

// schemeAFields are the 18 fields of scheme A, already in byte order (§3.2).
var schemeAFields = sortedCopy([]string{
	"amount", "currency_code", "customer_address_city", "customer_address_country",
	"customer_address_line1", "customer_address_line2", "customer_address_postal_code",
	"customer_address_state", "customer_email", "customer_first_name", "customer_last_name",
	"customer_phone", "gateway_account", "gateway_name", "order_no", "reference_number",
	"result", "state",
})

// schemeBPaths are the 26 dotted paths of scheme B, in byte order (§3.3).
var schemeBPaths = sortedCopy(append([]string{
	"agreement.id", "extra.autopay.subscription_id", "extra.merchant_id", "payment_type",
	"session_id", "token.customer_id", "token.pg_code", "token.token",
}, schemeAFields...))

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out) // byte order, as §3.2 step 3 requires
	return out
}

// Match tells which scheme and which configured key (index into the key list)
// verified a signature.
type Match struct {
	Scheme   Scheme
	KeyIndex int
}

// Signature returns the signature a delivery carries: the body's "signature"
// field, or else the value of a Signature HTTP header, which some of Ottu's
// integration guides use (§3.1, §8.4). The body wins.
func Signature(m map[string]any, header string) string {
	if s, ok := m["signature"].(string); ok && s != "" {
		return s
	}
	return strings.TrimSpace(header)
}

// Verify checks sig against every key under scheme A and scheme B, computed over
// the decoded field values exactly as received (§3.7), with constant-time
// comparisons. Where Ottu's own descriptions of a scheme differ (§8.2: which
// falsy values are skipped; how a non-string value is rendered), every variant
// is tried; for string values, the only ones Ottu documents in signed fields,
// the variants coincide.
func Verify(m map[string]any, sig string, keys [][]byte) (Match, error) {
	if len(keys) == 0 {
		return Match{}, ErrNoKeys
	}
	if sig == "" {
		return Match{}, ErrMissingSignature
	}
	want, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil || len(want) != sha256.Size {
		return Match{}, ErrBadSignature
	}
	for _, c := range Canonical(m) {
		for i, key := range keys {
			mac := hmac.New(sha256.New, key)
			mac.Write([]byte(c.Message))
			if hmac.Equal(mac.Sum(nil), want) {
				return Match{Scheme: c.Scheme, KeyIndex: i}, nil
			}
		}
	}
	return Match{}, ErrBadSignature
}

// Sign returns the lowercase hex HMAC-SHA256 of the scheme's canonical message of
// m under key, as Ottu computes it (the SDK's variant: skip only absent, null and
// ""). It is what the traffic simulator and the tests sign with.
func Sign(m map[string]any, scheme Scheme, key []byte) string {
	var msg string
	if scheme == SchemeB {
		msg = canonicalB(m, skipNullOrEmpty, renderPython)
	} else {
		msg = canonicalA(m, skipNullOrEmpty, renderPython)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msg))
	return hex.EncodeToString(mac.Sum(nil))
}

// CanonicalMessage is one candidate signed message.
type CanonicalMessage struct {
	Scheme  Scheme
	Message string
}

// Canonical returns the distinct candidate messages for m: scheme A then B, each
// in the SDK's variant first (§3.4: ottu-py tries A, then B).
func Canonical(m map[string]any) []CanonicalMessage {
	out := make([]CanonicalMessage, 0, 4)
	add := func(s Scheme, msg string) {
		for _, c := range out {
			if c.Scheme == s && c.Message == msg {
				return
			}
		}
		out = append(out, CanonicalMessage{s, msg})
	}
	add(SchemeA, canonicalA(m, skipNullOrEmpty, renderPython))
	add(SchemeB, canonicalB(m, skipNullOrEmpty, renderPython))
	if hasNonString(m) {
		// §8.2: the original scheme A sample and the scheme B doc skip every falsy
		// value; the scheme B doc renders values "as-is" (JSON text).
		add(SchemeA, canonicalA(m, skipFalsy, renderPython))
		add(SchemeB, canonicalB(m, skipFalsy, renderJSON))
		add(SchemeB, canonicalB(m, skipNullOrEmpty, renderJSON))
	}
	return out
}

func canonicalA(m map[string]any, skip func(any) bool, render func(any) string) string {
	var b strings.Builder
	for _, f := range schemeAFields {
		v, ok := m[f]
		if !ok || skip(v) {
			continue
		}
		b.WriteString(f)
		b.WriteString(render(v))
	}
	return b.String()
}

func canonicalB(m map[string]any, skip func(any) bool, render func(any) string) string {
	var b strings.Builder
	for _, p := range schemeBPaths {
		v, ok := lookupPath(m, p)
		if !ok || skip(v) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p)
		b.WriteByte('=')
		b.WriteString(render(v))
	}
	return b.String()
}

// lookupPath walks a dotted path through nested objects only (§3.3 step 2).
func lookupPath(m map[string]any, path string) (any, bool) {
	var cur any = m
	for seg := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func hasNonString(m map[string]any) bool {
	for _, f := range schemeAFields {
		if v, ok := m[f]; ok {
			if _, isString := v.(string); !isString && v != nil {
				return true
			}
		}
	}
	for _, p := range schemeBPaths {
		if v, ok := lookupPath(m, p); ok {
			if _, isString := v.(string); !isString && v != nil {
				return true
			}
		}
	}
	return false
}

// skipNullOrEmpty is the SDK's filter: absent, null and "" are left out; "0" stays.
func skipNullOrEmpty(v any) bool {
	s, isString := v.(string)
	return v == nil || (isString && s == "")
}

// skipFalsy is Python truthiness: also 0, false, [] and {}.
func skipFalsy(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case json.Number:
		d, err := decimal.NewFromString(x.String())
		return err == nil && d.IsZero()
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// renderPython renders as Python's str() would on Ottu's side: True/False.
func renderPython(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "True"
		}
		return "False"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// renderJSON renders a value as its JSON text (strings unquoted).
func renderJSON(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}
