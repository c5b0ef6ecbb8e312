package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Evidence is a fingerprint of what a parent's findings rest on: its
// deliveries (the highest stream sequence among them, and how many could not
// be read) and its merchant order. It changes when new evidence arrives, and
// only then: not with time, not when a copy of a delivery stored twice is
// merged away, not when Ottu's record is asked again. A person's
// acknowledgement or resolution holds while a finding's evidence is the one
// they saw (docs/console.md, "Evidence").
func Evidence(p *Parent) string {
	h := sha256.New()
	h.Write([]byte(strconv.FormatUint(p.LastSeq, 10)))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(len(p.Unreadable))))
	if p.Order != nil {
		h.Write([]byte{0})
		h.Write([]byte(p.Order.Amount.String() + " " + p.Order.Currency))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Stake is the money a parent's findings are about: the parent's amount and
// currency, or, before its payment webhook arrived, its largest operation's.
type Stake struct {
	Amount   events.Amount
	Currency string
	Gateway  string
}

// StakeOf returns p's stake.
func StakeOf(p *Parent) Stake {
	if p.HasPayment {
		return Stake{Amount: p.Amount, Currency: p.Currency, Gateway: p.Gateway}
	}
	var s Stake
	for _, o := range p.Operations {
		if o.TxnAmount.Valid && (!s.Amount.Valid || o.TxnAmount.Decimal.GreaterThan(s.Amount.Decimal)) {
			s.Amount, s.Currency = o.TxnAmount, o.TxnCurrency
		}
	}
	return s
}

// Standing is what people decided about one finding in the console
// (finding_actions), as a pass needs it.
type Standing struct {
	AcknowledgedEvidence string    // evidence of the latest acknowledgement; "" if none
	ResolvedEvidence     string    // evidence of the latest resolution by hand; "" if none
	MutedUntil           time.Time // the latest mute of the code for the payment; zero if none
}

// Quiet tells whether a finding with evidence must not be alerted (nor
// announced) at t: it is muted, or a person acknowledged or resolved it
// while its evidence was what it still is.
func (s Standing) Quiet(evidence string, t time.Time) bool {
	return t.Before(s.MutedUntil) ||
		(s.AcknowledgedEvidence != "" && s.AcknowledgedEvidence == evidence) ||
		(s.ResolvedEvidence != "" && s.ResolvedEvidence == evidence)
}

// ResolvedByHand tells whether a person resolved the finding and its
// evidence is still what they saw: it stays resolved.
func (s Standing) ResolvedByHand(evidence string) bool {
	return s.ResolvedEvidence != "" && s.ResolvedEvidence == evidence
}

// Settled tells whether a person acknowledged or resolved the finding as it
// stood with evidence: when new evidence arrives and the rule still fires,
// the finding is theirs to look at again, and it is alerted again.
func (s Standing) Settled(evidence string) bool {
	return evidence != "" && (s.AcknowledgedEvidence == evidence || s.ResolvedEvidence == evidence)
}
