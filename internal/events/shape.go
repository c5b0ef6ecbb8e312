package events

import (
	"errors"
	"fmt"
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

// CheckShape scans body once, byte by byte, and refuses it when a number is
// longer than MaxNumberLen, nesting deeper than MaxDepth, or keys more than
// MaxKeys. It parses no number, builds nothing and allocates nothing; a body
// that is not JSON passes (ParseObject says what is wrong with it).
func CheckShape(body []byte) error {
	var inObject [MaxDepth]bool // per open container: is it an object
	depth, keys := 0, 0
	expectKey := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"':
			j := i + 1
			for j < len(body) && body[j] != '"' {
				if body[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(body) {
				return nil // unterminated string: not JSON
			}
			if expectKey {
				if keys++; keys > MaxKeys {
					return fmt.Errorf("%w: more than %d keys", ErrTooComplex, MaxKeys)
				}
				expectKey = false
			}
			i = j
		case c == '{' || c == '[':
			if depth == MaxDepth {
				return fmt.Errorf("%w: nesting deeper than %d", ErrTooComplex, MaxDepth)
			}
			inObject[depth], expectKey = c == '{', c == '{'
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return nil // not JSON
			}
			depth--
		case c == ',':
			expectKey = depth > 0 && inObject[depth-1]
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(body) && isNumberByte(body[j]) {
				j++
			}
			if j-i > MaxNumberLen {
				return fmt.Errorf("%w: a number of %d characters", ErrTooComplex, j-i)
			}
			i = j - 1
		}
	}
	return nil
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}
