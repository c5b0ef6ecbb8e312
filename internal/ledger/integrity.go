package ledger

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// The rules about the deliveries themselves rather than the money they move:
// whether they agree with each other, can be read, belong to this environment,
// and are the bodies Ottu signed.

// CONFLICTING_DUPLICATE: two deliveries of one operation disagree on operation,
// amount or currency, or on state other than refund_queued moving to refunded
// or refund_rejected.
func conflictingDuplicate(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	var bad []string
	for _, o := range p.Operations {
		if why := conflict(o.Seen); why != "" {
			bad = append(bad, o.ReferenceNumber+": "+why)
		}
	}
	if len(bad) > 0 {
		fire(ConflictingDuplicate, "deliveries of one operation disagree: %s", strings.Join(bad, "; "))
	}
}

// conflict says on what the deliveries summed up in s disagree, or "".
func conflict(s Seen) string {
	switch {
	case len(s.Operations) > 1:
		return fmt.Sprintf("operation %s", strings.Join(s.Operations, " vs "))
	case rangeDiffers(s.Amount):
		return fmt.Sprintf("amount %s", rangeText(s.Amount))
	case rangeDiffers(s.TxnAmount):
		return fmt.Sprintf("txn.amount %s", rangeText(s.TxnAmount))
	}
	for i, a := range s.Currencies {
		for _, b := range s.Currencies[i+1:] {
			if !strings.EqualFold(a, b) {
				return fmt.Sprintf("currency %s vs %s", a, b)
			}
		}
	}
	for i, a := range s.TxnStates {
		for _, b := range s.TxnStates[i+1:] {
			if !queuedMove(a, b) && !queuedMove(b, a) {
				return fmt.Sprintf("state %s vs %s", a, b)
			}
		}
	}
	return ""
}

// rangeDiffers: two deliveries gave different amounts, or one gave none.
func rangeDiffers(r Range) bool {
	return r.Min.Valid && (!r.Min.Equal(r.Max) || r.Absent)
}

func rangeText(r Range) string {
	if !r.Min.Equal(r.Max) {
		return r.Min.String() + " vs " + r.Max.String()
	}
	return "none vs " + r.Min.String()
}

func queuedMove(from, to string) bool {
	return events.IsRefundQueued(from) &&
		slices.Contains([]string{events.TxnRefunded, events.TxnRefundRejected}, to)
}

// SANDBOX_IN_LIVE: with OTTU_ENVIRONMENT=live, a webhook has is_sandbox true.
func sandboxInLive(p *Parent, cfg Config, _ time.Time, fire fireFunc) {
	if cfg.Live && p.Sandbox {
		fire(SandboxInLive, "a webhook of this parent has is_sandbox true in a live environment")
	}
}

// UNREADABLE_WEBHOOK: an authentic webhook was kept raw because a value
// cannot be read as Ottu documents it (or the store refused it).
func unreadableWebhook(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	if len(p.Unreadable) == 0 {
		return
	}
	us := slices.Clone(p.Unreadable)
	slices.SortFunc(us, func(a, b Unreadable) int {
		return cmp.Or(a.ReceivedAt.Compare(b.ReceivedAt), cmp.Compare(a.DeliveryID, b.DeliveryID))
	})
	parts := make([]string, len(us))
	for i, u := range us {
		what := u.Reason
		if u.Field != "" {
			what = "field " + u.Field + ": " + u.Reason
		}
		parts[i] = fmt.Sprintf("delivery %s (%s, received %s) %s", u.DeliveryID, u.Kind, u.ReceivedAt.UTC().Format(time.RFC3339), what)
	}
	fire(UnreadableWebhook, "%d authentic webhook(s) kept raw in unreadable_webhooks, not reconciled: %s",
		len(us), strings.Join(parts, "; "))
}

// MaxDetail bounds a finding's detail, in bytes.
const MaxDetail = 1024

// CleanDetail makes text fit a finding's detail: control characters (what a
// webhook's text fields may carry: newlines, NUL) become spaces, and the text
// is cut to MaxDetail bytes on a character boundary, ending in "…".
func CleanDetail(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	if len(s) <= MaxDetail {
		return s
	}
	const ellipsis = "…"
	cut := MaxDetail - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// REPLAYED_WEBHOOK: evidence that someone re-posted a signed body with
// fields no signature covers changed: deliveries of one operation that
// disagree on source or txn.session_id (Ottu never changes them), or a signed
// reference (a payment attempt's or an operation's reference_number) under
// another parent's session_id.
func replayedWebhook(p *Parent, _ Config, _ time.Time, fire fireFunc) {
	var bad []string
	for _, o := range p.Operations {
		if len(o.Seen.Sources) > 1 {
			bad = append(bad, fmt.Sprintf("%s: deliveries disagree on source (%s)", o.ReferenceNumber, strings.Join(o.Seen.Sources, " vs ")))
		}
		if len(o.Seen.Children) > 1 {
			bad = append(bad, fmt.Sprintf("%s: deliveries disagree on txn.session_id (%s)", o.ReferenceNumber, strings.Join(o.Seen.Children, " vs ")))
		}
	}
	if c := contradictions(p); len(c) > 0 {
		bad = append(bad, fmt.Sprintf("Ottu's own record (Payment Status Query at %s) contradicts the webhooks: %s",
			p.Ottu.AskedAt.UTC().Format(time.RFC3339), strings.Join(c, "; ")))
	}
	for _, sh := range p.Shared {
		var others []string
		for _, s := range sh.Sessions {
			if s != p.SessionID {
				others = append(others, s)
			}
		}
		list := strings.Join(others, ", ")
		if more := max(sh.Parents, len(sh.Sessions)) - 1 - len(others); more > 0 {
			list += fmt.Sprintf(" and %d more", more)
		}
		bad = append(bad, fmt.Sprintf("%s %s also delivered under session_id %s", sh.Kind, sh.ReferenceNumber, list))
	}
	if len(bad) > 0 {
		fire(ReplayedWebhook, "a signed body was re-posted with unsigned fields changed: %s", strings.Join(bad, "; "))
	}
}
