package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

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
