package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// checkShapeTokens is CheckShape as it was first written, on encoding/json's
// tokens: the reference the byte scanner must agree with on every JSON body.
func checkShapeTokens(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	depth, keys := 0, 0
	var inObject []bool
	expectKey := false
	for {
		tok, err := dec.Token()
		if err == io.EOF || err != nil {
			return nil
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				depth++
				if depth > events.MaxDepth {
					return fmt.Errorf("%w: nesting deeper than %d", events.ErrTooComplex, events.MaxDepth)
				}
				inObject = append(inObject, t == '{')
				expectKey = t == '{'
				continue
			default:
				depth--
				inObject = inObject[:len(inObject)-1]
			}
		case string:
			if expectKey {
				keys++
				if keys > events.MaxKeys {
					return fmt.Errorf("%w: more than %d keys", events.ErrTooComplex, events.MaxKeys)
				}
				expectKey = false
				continue
			}
		case json.Number:
			if len(t) > events.MaxNumberLen {
				return fmt.Errorf("%w: a number of %d characters", events.ErrTooComplex, len(t))
			}
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
}

func TestCheckShape(t *testing.T) {
	keys := func(n int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"k%d":"v"`, i)
		}
		return b.String() + "}"
	}
	tests := []struct {
		name    string
		body    string
		refused bool
	}{
		{"webhook", string(mustReadFile(t, "e1_payment_paid.json")), false},
		{"number of 64", `{"a":` + strings.Repeat("1", 64) + `}`, false},
		{"number of 65", `{"a":` + strings.Repeat("1", 65) + `}`, true},
		{"long number in an array", `[1,-` + strings.Repeat("2", 70) + `e5]`, true},
		{"long number as text", `{"a":"` + strings.Repeat("1", 900) + `"}`, false},
		{"depth 32", strings.Repeat("[", 32) + strings.Repeat("]", 32), false},
		{"depth 33", strings.Repeat("[", 33) + strings.Repeat("]", 33), true},
		{"1000 keys", keys(1000), false},
		{"1001 keys", keys(1001), true},
		{"keys in nested objects count", `{"a":{"b":{"c":1}},"d":[{"e":2}]}`, false},
		{"values are not keys", `{"a":"b","c":["d","e",{"f":"g"}]}`, false},
		{"escaped quotes", `{"a\"b":"c\\","d":"\"` + strings.Repeat("9", 80) + `"}`, false},
		{"not JSON", `{"a":`, false},
		{"unterminated string", `{"a":"b`, false},
		{"stray close", `]]]`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := events.CheckShape([]byte(tc.body))
			if (err != nil) != tc.refused || (err != nil && !errors.Is(err, events.ErrTooComplex)) {
				t.Fatalf("CheckShape = %v, refused want %v", err, tc.refused)
			}
			if json.Valid([]byte(tc.body)) && (checkShapeTokens([]byte(tc.body)) != nil) != tc.refused {
				t.Fatalf("the token reference disagrees")
			}
		})
	}
}

// FuzzCheckShape: on any valid JSON, the byte scanner refuses exactly what
// the token reference refuses.
func FuzzCheckShape(f *testing.F) {
	addSeeds(f)
	f.Add([]byte(`{"a":[1,2,{"b":"c\"d"}],"e":-1.5e+10}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			_ = events.CheckShape(body) // must not panic
			return
		}
		got, want := events.CheckShape(body), checkShapeTokens(body)
		if (got == nil) != (want == nil) {
			t.Fatalf("CheckShape(%q) = %v, the token reference says %v", body, got, want)
		}
	})
}
