package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// RecordIDPrefix starts the delivery id of a payment delivery that is Ottu's
// signed record, asked for by ottu-recon (Payment Status Query), rather than
// a webhook: a webhook with the same body is a delivery of its own.
const RecordIDPrefix = "inquiry:"

// MaxBodyBytes is the size limit of a webhook body (docs/product.md: 1 MiB):
// ingest refuses a larger one, and the stream's messages are sized for it.
const MaxBodyBytes = 1 << 20

// EnvelopeVersion is the version of the envelope format between ingest and
// reconcile. A consumer refuses a version it does not know.
const EnvelopeVersion = "1"

// Envelope is one delivery as ingest received it, with what ingest learnt about
// it. Body is the raw request body, byte for byte, kept for audit.
type Envelope struct {
	ID         string    // delivery id (DeliveryID), or a rejected delivery's id
	Kind       Kind      // payment or operation; empty for a rejected delivery
	ReceivedAt time.Time // when ingest received it (UTC)
	Scheme     Scheme    // signature scheme that matched; empty when rejected
	KeyIndex   int       // index of the key that matched in OTTU_HMAC_KEYS
	Reject     string    // reason, when the delivery was rejected
	Body       []byte
	// Source is where a delivery came from: "" for Ottu's webhook, "inquiry"
	// for the answer to ottu-recon's Payment Status Query.
	Source string
}

// Rejected tells whether the envelope carries a rejected delivery.
func (e Envelope) Rejected() bool { return e.Reject != "" }

// DeliveryID derives a stable id from a delivery's content so that an exact
// re-delivery is recognisably the same message, even re-serialized by Ottu with
// other whitespace or key order. Ottu's payloads carry no event id (§5, §8.16).
//
// What goes into it: SHA-256 over the decoded object re-encoded canonically
// (keys sorted, no insignificant whitespace, numbers and strings exactly as
// received, every field including the signature), prefixed with the kind. The
// id is the first 16 bytes in hex. Two deliveries differing in any value, e.g. a
// later state or a later timestamp_utc, get different ids.
func DeliveryID(kind Kind, m map[string]any) string {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	buf := canonical(make([]byte, 0, 2048), m)
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// canonical appends v re-encoded exactly as encoding/json's Marshal encodes
// it (delivery ids must not change: they de-duplicate across versions), for
// the values a decoded object holds: objects (keys sorted), arrays, strings,
// json.Number, bool and null. It builds no reflection and far less garbage.
// FuzzCanonical holds it to json.Marshal.
func canonical(b []byte, v any) []byte {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = canonical(b, v[k])
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = canonical(b, x)
		}
		return append(b, ']')
	case string:
		return appendString(b, v)
	case json.Number:
		if v == "" {
			return append(b, '0')
		}
		return append(b, v...)
	case bool:
		return strconv.AppendBool(b, v)
	case nil:
		return append(b, "null"...)
	}
	// Not produced by ParseObject; encoding/json decides.
	enc, err := json.Marshal(v)
	if err != nil {
		panic("events: re-encode decoded value: " + err.Error())
	}
	return append(b, enc...)
}

// appendString appends s as encoding/json writes a string with HTML
// escaping: quotes, backslashes and control characters escaped, <, > and &
// as \u003c, \u003e and \u0026, U+2028 and U+2029 escaped, invalid UTF-8 as
// U+FFFD.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// RejectedID derives the id of a rejected delivery from its raw bytes and reason.
func RejectedID(body []byte, reason string) string {
	h := sha256.New()
	h.Write([]byte("rejected\x00"))
	h.Write([]byte(reason))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// PublishResult is what storing an envelope durably produced.
type PublishResult struct {
	Stream    string // stream that stored it
	Sequence  uint64 // its sequence in the stream; 0 when spooled
	Duplicate bool   // the stream already had this delivery id
	Spooled   bool   // kept in the local spool, to be forwarded later
}

// StreamMessage is an envelope read back from the stream by the consumer.
// Exactly one of these holds: Webhook is the decoded webhook of a verified
// delivery; Unreadable describes a verified delivery that cannot be read; the
// envelope is a rejected delivery (Rejected()); or Invalid says why the
// message is not an envelope at all (it is then kept as rejected).
type StreamMessage struct {
	Envelope
	StreamSeq  uint64
	Webhook    *Webhook
	Unreadable *Unreadable
	Invalid    string
}
