package events

import "fmt"

// Verification says how Read authenticates a body: with Keys (and a
// Signature header, when the delivery had one), or Trusted when ingest
// verified it already (the store consumer reads what ingest published).
type Verification struct {
	Keys    [][]byte
	Header  string
	Trusted bool
}

// Reading is what one reading of an Ottu body found.
type Reading struct {
	Object map[string]any
	Kind   Kind  // payment, operation, or KindUnreadable
	Match  Match // the signature that verified; zero when Trusted
	// Webhook is the decoded webhook; nil when a value could not be read,
	// and then Unreadable says which and why.
	Webhook    *Webhook
	Unreadable *Unreadable
}

// DeliveryID is the delivery's id (see the package-level DeliveryID).
func (r Reading) DeliveryID() string { return DeliveryID(r.Kind, r.Object) }

// Read reads an Ottu body the one way the product does, for ingest, the store
// consumer, the inquirer and the benchmarks' yardstick alike: bound its shape
// before any parse (CheckShape), parse it keeping numbers exact, verify its
// signature, decode it. An error means it is no authentic Ottu object
// (ErrTooComplex, ErrNotObject, ErrMissingSignature, ErrBadSignature); an
// authentic body whose values cannot be read as Ottu documents them is no
// error: it comes back with Unreadable set, to be kept raw.
func Read(body []byte, v Verification) (Reading, error) {
	if err := CheckShape(body); err != nil {
		return Reading{}, err
	}
	m, err := ParseObject(body)
	if err != nil {
		return Reading{}, err
	}
	r := Reading{Object: m}
	if !v.Trusted {
		if r.Match, err = Verify(m, Signature(m, v.Header), v.Keys); err != nil {
			return Reading{}, err
		}
	}
	w, err := DecodeObject(m)
	if err != nil {
		u := Salvage(m, err)
		r.Kind, r.Unreadable = u.Kind, &u
		return r, nil
	}
	r.Kind, r.Webhook = w.Kind, w
	return r, nil
}

// Payment returns the payment webhook read, or an error saying why there is
// none (the body was an operation, or a value could not be read).
func (r Reading) Payment() (*Payment, error) {
	switch {
	case r.Unreadable != nil:
		return nil, fmt.Errorf("cannot be read: field %s: %s", r.Unreadable.Field, r.Unreadable.Reason)
	case r.Webhook.Payment == nil:
		return nil, fmt.Errorf("a %s webhook, not a payment", r.Kind)
	}
	return r.Webhook.Payment, nil
}
