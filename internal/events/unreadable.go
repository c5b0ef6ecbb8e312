package events

import (
	"encoding/json"
	"errors"
)

// KindUnreadable is the envelope kind of an authentic delivery that is neither
// recognisably a payment nor an operation webhook. It is never a Webhook's Kind.
const KindUnreadable Kind = "unreadable"

// Unreadable is what is known of an authentic webhook (its signature verified)
// that cannot be read as Ottu documents it: an amount that is not a storable
// decimal, a timestamp out of range, no session_id. Such a delivery is kept
// raw and raised as an UNREADABLE_WEBHOOK finding (docs/product.md), never
// refused: Ottu does not resend a webhook that got an error status.
type Unreadable struct {
	Kind      Kind   // payment or operation when recognisable, else KindUnreadable
	SessionID string // the parent's session_id when it can be read, else ""
	Field     string // the field that could not be read; "" when the whole body
	Reason    string
}

// Salvage describes an object that DecodeObject refused with err.
func Salvage(m map[string]any, err error) Unreadable {
	u := Unreadable{Kind: GuessKind(m), Reason: err.Error()}
	var fe *FieldError
	if errors.As(err, &fe) {
		u.Field, u.Reason = fe.Field, fe.Err.Error()
	}
	switch v := m["session_id"].(type) {
	case string:
		u.SessionID = v
	case json.Number:
		u.SessionID = v.String()
	}
	return u
}

// GuessKind is KindOf, made lenient for an authentic body: anything with a
// state is a payment, anything with a txn or operation an operation.
func GuessKind(m map[string]any) Kind {
	if k, err := KindOf(m); err == nil {
		return k
	}
	if _, ok := m["txn"]; ok {
		return KindOperation
	}
	if _, ok := m["state"]; ok {
		return KindPayment
	}
	return KindUnreadable
}
