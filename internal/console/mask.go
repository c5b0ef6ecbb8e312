package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// What a viewer may see of a delivery's body: everything about a person
// masked (docs/console.md, "Masking for viewers").

// prettyBody indents a JSON body; with mask set, everything under a key
// about a person (personalWords: email, phone, name, address, …) is masked,
// whatever its type (and the keys sorted). A body that is not JSON is shown as it is, or not at
// all when masked.
func prettyBody(body []byte, mask bool) string {
	if !mask {
		// Indented only: keys, their order and every value as Ottu sent them.
		var b bytes.Buffer
		if json.Indent(&b, body, "", "  ") == nil {
			return b.String()
		}
		return string(body)
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		if mask {
			return "(this body is not JSON; it is shown to operators only)"
		}
		return string(body)
	}
	if mask {
		v = maskCustomer(v)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(body)
	}
	return string(out)
}

// personalWords mark a key whose value is about a person: everything under
// it is masked for a viewer, whatever its JSON type or nesting.
// The initiator is the Ottu user who made the payment; a token is the
// customer's saved card (its number, the name on it, the token that charges
// it).
var personalWords = []string{"email", "phone", "mobile", "first_name", "last_name", "full_name", "username", "name_on_card",
	"customer", "holder", "initiator", "token", "birth", "address", "billing", "shipping", "card_number", "national_id", "civil_id"}

func personalKey(k string) bool {
	lk := strings.ToLower(k)
	for _, w := range personalWords {
		if strings.Contains(lk, w) {
			return true
		}
	}
	return false
}

// maskCustomer masks every value under a personal key (personalWords).
func maskCustomer(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if personalKey(k) {
				x[k] = maskAll(val)
				continue
			}
			x[k] = maskCustomer(val)
		}
	case []any:
		for i := range x {
			x[i] = maskCustomer(x[i])
		}
	}
	return v
}

// maskAll masks every leaf of v: strings, numbers and booleans alike.
func maskAll(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			x[k] = maskAll(val)
		}
		return x
	case []any:
		for i := range x {
			x[i] = maskAll(x[i])
		}
		return x
	case nil:
		return nil
	case string:
		return maskText(x)
	default: // json.Number, bool
		return maskText(fmt.Sprint(x))
	}
}

// maskText keeps the first character of a value (and an email's domain's
// last part) and hides the rest.
func maskText(s string) string {
	if s == "" {
		return ""
	}
	first, _ := utf8.DecodeRuneInString(s)
	tail := ""
	if at := strings.LastIndexByte(s, '.'); strings.Contains(s, "@") && at > 0 {
		tail = s[at:]
	}
	return string(first) + "•••••" + tail
}
