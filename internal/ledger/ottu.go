package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// OttuRecord is what Ottu's own record of a parent said the last time
// ottu-recon asked (Payment Status Query, docs/ottu-webhooks.md §7.1), as the
// store keeps it.
//
// Only a verdict is kept here: an answer that verified, was about the
// payment asked and could be read (Found), or Ottu's documented "no such
// payment" (not Found). Anything else (no answer, a proxy's page, a signed
// answer about another payment, one that cannot be read) is no verdict and
// never reaches the rules.
type OttuRecord struct {
	AskedAt  time.Time
	Found    bool                 // Ottu knows the parent
	State    string               // the parent's state in Ottu's record
	Amount   events.Amount        // the parent's amount in Ottu's record
	Currency string               // its currency_code
	Sandbox  bool                 // its is_sandbox
	Children map[string]OttuChild // the children Ottu's record lists, by session_id
}

// OttuChild is one child in Ottu's record.
type OttuChild struct {
	State    string
	Amount   events.Amount
	Currency string
}

// Inquirer asks Ottu's own record about a parent, or about a merchant order,
// and keeps the answer where the store reads it back (Parent.Ottu, and the
// record stored as a delivery), Ottu's throttle permitting.
type Inquirer interface {
	Inquire(ctx context.Context, q Question, runID string) error
}

// ErrInquiryPaused means Ottu asked to wait (429) or the overall rate is
// spent: no more questions this pass.
var ErrInquiryPaused = errors.New("inquiries paused")

// Throttle is Ottu's throttle on its Payment Status Query
// (docs/ottu-webhooks.md §7.1): no question in the first NotBefore of a
// payment's life, at most PerTransaction questions about one transaction in
// all (Ottu's pages say "per day" in one place and "in total" in another:
// the stricter is kept), counting questions by session_id and by order_no
// together, Apart between two, and at most PerMinute questions a minute
// overall. This is the one place its numbers live: the store chooses whom to
// ask by the first three, the inquirer keeps the last.
type Throttle struct {
	NotBefore      time.Duration
	Apart          time.Duration
	PerTransaction int
	PerMinute      int
}

// OttuThrottle is Ottu's documented throttle.
var OttuThrottle = Throttle{NotBefore: 10 * time.Minute, Apart: 30 * time.Minute, PerTransaction: 3, PerMinute: 30}

// PendingStates are the parent states of a payment still waiting for its
// outcome: one that stays in them past the grace is worth asking Ottu about.
var PendingStates = []string{events.StateCreated, events.StatePending, events.StateAttempted}

// InquiryQuery asks the store which parents to ask Ottu about.
type InquiryQuery struct {
	Codes    []Code // parents with an open finding of one of these codes
	Now      time.Time
	Limit    int
	Throttle Throttle // leave out the parents it does not allow yet
}

// NeedsConfirmation tells whether a finding of code is worth asking Ottu
// about: it rests on a value no signature covers and is critical, or it is
// about a webhook that never came.
func NeedsConfirmation(c Code) bool {
	switch c {
	case MissingOperation, OrphanOperation:
		return true
	}
	return SeverityOf(c) == Critical && unsignedInputs[c] != ""
}

func confirmationCodes() []Code {
	var out []Code
	for _, c := range Codes {
		if NeedsConfirmation(c.Code) {
			out = append(out, c.Code)
		}
	}
	return out
}

// contradictions lists where the webhooks of p disagree with Ottu's own
// record, as far as Ottu knew when asked: every value a finding may rest on
// (the parent's amount, currency, state and sandbox flag; each child's
// existence, amount, currency and state). A finding is "confirmed" only when
// none disagrees.
func contradictions(p *Parent) []string {
	o := p.Ottu
	if o == nil {
		return nil
	}
	if !o.Found {
		if p.HasPayment || len(p.Operations) > 0 {
			return []string{"Ottu has no payment with this session_id"}
		}
		return nil
	}
	var out []string
	// The parent's values, when every payment webhook we hold came before
	// the question (a later one may carry a state Ottu did not know yet).
	if p.HasPayment && !p.LastPaymentAt.After(o.AskedAt) {
		if o.Amount.Valid && p.Amount.Valid && !o.Amount.Equal(p.Amount) {
			out = append(out, fmt.Sprintf("amount %s in Ottu's record, not %s", o.Amount, p.Amount))
		}
		if o.Currency != "" && p.Currency != "" && o.Currency != p.Currency {
			out = append(out, fmt.Sprintf("currency %s in Ottu's record, not %s", o.Currency, p.Currency))
		}
		if o.Sandbox != p.Sandbox {
			out = append(out, fmt.Sprintf("is_sandbox %t in Ottu's record, not %t", o.Sandbox, p.Sandbox))
		}
		if collected := p.Reached[events.StatePaid] || p.Reached[events.StateAuthorized]; collected && neverCollected[o.State] {
			out = append(out, fmt.Sprintf("state %s in Ottu's record, but a webhook said %s", o.State, collectedState(p)))
		}
	}
	for _, op := range p.Operations {
		if op.ChildSessionID == "" || op.FirstReceived.After(o.AskedAt) {
			continue
		}
		c, ok := o.Children[op.ChildSessionID]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("no child %s (operation %s)", op.ChildSessionID, op.ReferenceNumber))
		case op.TxnAmount.Valid && c.Amount.Valid && !op.TxnAmount.Equal(c.Amount):
			out = append(out, fmt.Sprintf("child %s of %s, not %s (operation %s)", op.ChildSessionID, c.Amount, op.TxnAmount, op.ReferenceNumber))
		case c.Currency != "" && op.TxnCurrency != "" && c.Currency != op.TxnCurrency:
			out = append(out, fmt.Sprintf("child %s in %s, not %s (operation %s)", op.ChildSessionID, c.Currency, op.TxnCurrency, op.ReferenceNumber))
		case c.State != op.TxnState && !queuedMove(op.TxnState, c.State):
			out = append(out, fmt.Sprintf("child %s %s, not %s (operation %s)", op.ChildSessionID, c.State, op.TxnState, op.ReferenceNumber))
		}
	}
	var listed []string
	for child, at := range p.Listed {
		if _, ok := o.Children[child]; !ok && child != "" && !at.After(o.AskedAt) {
			listed = append(listed, child)
		}
	}
	sort.Strings(listed)
	for _, child := range listed {
		out = append(out, fmt.Sprintf("no child %s, which transactions[] listed", child))
	}
	return out
}

// neverCollected are the parent states of a payment that collected nothing:
// Ottu's record in one of them contradicts a webhook that said paid or
// authorized (no documented move goes from paid or authorized back to them).
var neverCollected = map[string]bool{"created": true, "pending": true, "attempted": true, "failed": true,
	"expired": true, "canceled": true, "cancelled": true, "invalided": true}

func collectedState(p *Parent) string {
	if p.Reached[events.StatePaid] {
		return events.StatePaid
	}
	return events.StateAuthorized
}

// confirm records on the findings that need it what Ottu's record says.
func confirm(p *Parent, fired []Finding) {
	if p.Ottu == nil {
		return
	}
	verdict := "confirmed"
	if len(contradictions(p)) > 0 {
		verdict = "contradicted"
	}
	for i := range fired {
		if NeedsConfirmation(fired[i].Code) {
			fired[i].Confirmation = verdict + " by Ottu's Payment Status Query at " + p.Ottu.AskedAt.UTC().Format(time.RFC3339)
		}
	}
}

// inquire asks Ottu about the parents whose findings need its word, and
// what the completeness sweep finds missing (SweepQuery). It runs last in a
// pass, after every finding is written and alerted, within its own budget: a
// share of the time the pass has left. What Ottu answers is read back with
// each parent by the next pass. Nothing here fails the pass: Ottu, or the
// question of whom to ask, may fail, and the findings stand without its
// word.
func (r *Reconciler) inquire(ctx context.Context, run *Run, t time.Time) error {
	budget := r.InquiryBudget
	if deadline, ok := ctx.Deadline(); ok && budget <= 0 {
		budget = time.Until(deadline) / 4
	}
	if budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	limit := r.InquiryLimit
	if limit <= 0 {
		limit = OttuThrottle.PerMinute
	}
	var problems []string
	confirm, err := r.Store.InquiryCandidates(ctx, InquiryQuery{Codes: confirmationCodes(), Now: t, Limit: limit, Throttle: OttuThrottle})
	if err != nil {
		problems = append(problems, fmt.Sprintf("select parents to ask Ottu about: %v", err))
	}
	sweep, err := r.Store.SweepCandidates(ctx, SweepQuery{Now: t, PendingBefore: t.Add(-r.Config.Grace),
		Grace: r.Config.OrderGrace, Watch: r.Config.OrderWatch, Limit: limit, Throttle: OttuThrottle})
	if err != nil {
		problems = append(problems, fmt.Sprintf("select what the completeness sweep asks: %v", err))
	}
	questions := share(confirm, sweep, limit)
	defer func() {
		if len(problems) > 0 {
			run.InquiryError = strings.Join(problems, "; ")
		}
	}()
	for i, q := range questions {
		if ctx.Err() != nil {
			problems = append(problems, fmt.Sprintf("%d question(s) not asked: %v", len(questions)-i, ErrOutOfTime))
			return nil
		}
		if err := r.fence(); err != nil {
			return err
		}
		err := r.Inquirer.Inquire(ctx, q, run.ID)
		switch {
		case errors.Is(err, ErrInquiryPaused):
			problems = append(problems, fmt.Sprintf("%d question(s) not asked: %v", len(questions)-i, err))
			return nil
		case err != nil:
			run.InquiryErrors++
			continue
		}
		run.Inquiries++
		if q.Since != (time.Time{}) {
			run.Swept++
		}
	}
	return nil
}

// share orders the questions of a pass, at most limit: the confirmations of
// findings (most severe first) keep half of it and the completeness sweep
// (oldest first) the other half; what either leaves unused the other may
// take. A parent is asked once.
func share(confirm []string, sweep []Question, limit int) []Question {
	half := limit / 2
	nc := min(len(confirm), max(half, limit-len(sweep)))
	ns := min(len(sweep), limit-nc)
	out := make([]Question, 0, nc+ns)
	seen := map[string]bool{}
	for _, s := range confirm[:nc] {
		seen[s] = true
		out = append(out, Question{SessionID: s})
	}
	for _, q := range sweep[:ns] {
		if q.SessionID == "" || !seen[q.SessionID] {
			out = append(out, q)
		}
	}
	return out
}
