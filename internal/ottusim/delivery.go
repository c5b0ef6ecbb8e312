package ottusim

import (
	"encoding/json"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// How the simulated parents reach ingest: signed, some twice, some out of
// order, some never.

// Lose makes a fraction share of parents (clean paid purchases, as many as
// there are) lose every payment webhook, as if Ottu sent them while ingest was
// down: Ottu's record still holds them paid, their merchant orders stand, and
// each must raise MISSING_PAYMENT_WEBHOOK once the completeness sweep asked
// Ottu. It returns the session_ids of the parents it changed.
func Lose(parents []Parent, share float64) []string {
	want := int(float64(len(parents)) * share)
	var lost []string
	for i := range parents {
		p := &parents[i]
		if len(lost) >= want {
			break
		}
		if p.Kind != Purchase && p.Kind != PendingThenPaid {
			continue
		}
		p.Webhooks = nil
		p.Expect = []ledger.Code{ledger.MissingPaymentWebhook}
		lost = append(lost, p.SessionID)
	}
	return lost
}

// Delivery is one HTTP delivery: a signed body.
type Delivery struct {
	Kind events.Kind
	Body []byte
	At   time.Time // the webhook's timestamp_utc
}

// Deliveries signs every webhook of parents with key (scheme A, or B for a
// fraction schemeB of them), adds exact re-deliveries at rate dup, and
// delivers a fraction outOfOrder of each parent's webhooks in reverse.
func (g *Generator) Deliveries(parents []Parent, key []byte, schemeB, dup, outOfOrder float64) []Delivery {
	r := g.rnd()
	var out []Delivery
	for _, p := range parents {
		ws := append([]Webhook(nil), p.Webhooks...)
		if len(ws) > 1 && r.Float64() < outOfOrder {
			for i, j := 0, len(ws)-1; i < j; i, j = i+1, j-1 {
				ws[i], ws[j] = ws[j], ws[i]
			}
		}
		for _, w := range ws {
			scheme := events.SchemeA
			if r.Float64() < schemeB {
				scheme = events.SchemeB
			}
			d := Delivery{Kind: w.Kind, Body: Sign(w.Object, scheme, key), At: w.At}
			out = append(out, d)
			if r.Float64() < dup {
				out = append(out, d)
			}
		}
	}
	return out
}

// Sign returns the JSON body of m with its signature set.
func Sign(m map[string]any, scheme events.Scheme, key []byte) []byte {
	m = clone(m)
	delete(m, "signature")
	// Sign what the receiver will decode: round-trip through JSON first, so
	// numbers are json.Number exactly as sent.
	b, _ := json.Marshal(m)
	obj, err := events.ParseObject(b)
	if err != nil {
		panic(err)
	}
	obj["signature"] = events.Sign(obj, scheme, key)
	out, _ := json.Marshal(obj)
	return out
}
