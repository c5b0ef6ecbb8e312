package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// Bounds on what ingest reads of a body before its signature is checked:
// anyone can send a body, so nothing worse than linear may run on it. Ottu's
// webhooks are far inside them.
const (
	MaxNumberLen = 64   // characters of one JSON number
	MaxDepth     = 32   // nesting of objects and arrays
	MaxKeys      = 1000 // object keys in the whole body
)

// ErrTooComplex means a body is outside the bounds above.
var ErrTooComplex = errors.New("body too complex to read before authentication")

// CheckShape scans body once, token by token, and refuses it when a number is
// longer than MaxNumberLen, nesting deeper than MaxDepth, or keys more than
// MaxKeys. It parses no number and builds nothing.
func CheckShape(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	depth, keys := 0, 0
	var inObject []bool // per open container: is it an object
	expectKey := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // not JSON: ParseObject says so
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				depth++
				if depth > MaxDepth {
					return fmt.Errorf("%w: nesting deeper than %d", ErrTooComplex, MaxDepth)
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
				if keys > MaxKeys {
					return fmt.Errorf("%w: more than %d keys", ErrTooComplex, MaxKeys)
				}
				expectKey = false
				continue
			}
		case json.Number:
			if len(t) > MaxNumberLen {
				return fmt.Errorf("%w: a number of %d characters", ErrTooComplex, len(t))
			}
		}
		// A value ended: in an object, a key comes next.
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1]
	}
}

// decimalParses counts the decimals parsed from text: the only parse here
// whose cost grows faster than its input. Tests read it to prove a body was
// refused before any.
var decimalParses atomic.Uint64

// DecimalParses returns how many decimals this process parsed from text.
func DecimalParses() uint64 { return decimalParses.Load() }
