package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Status of a finding.
const (
	StatusOpen     = "open"
	StatusResolved = "resolved"
)

// Record is a finding with its lifecycle.
type Record struct {
	Finding
	Status      string
	FirstSeen   time.Time
	LastSeen    time.Time
	ResolvedAt  time.Time // zero while open
	AlertedAt   time.Time // zero until an alert carrying it was delivered
	PublishedAt time.Time // zero until JetStream acknowledged it on recon.findings
	RunID       string    // the pass that wrote this version
	// AlertRefusals counts the times the receiver refused this finding
	// alone; while AlertRetryAt is ahead, it is parked (not sent).
	AlertRefusals int
	AlertRetryAt  time.Time
	// Evidence is the parent's evidence when this version was written
	// (Evidence); Stake the money at stake, for the console.
	Evidence string
	Stake    Stake
}

// Run is the record of one pass (table recon_runs).
type Run struct {
	ID               string
	Started          time.Time
	Finished         time.Time
	Watermark        time.Time // the store's clock when the pass started
	Full             bool
	ParentsEvaluated int
	ParentsFailed    int      // parents that could not be evaluated; the next pass retries them
	FailedSessions   []string // their session ids (at most MaxFailedListed)
	Raised           int
	Resolved         int
	Open             int
	Alerted          int
	AlertsPending    int    // open findings still owed an alert after this pass
	AlertsParked     int    // open findings the receiver refused alone, waiting out their back-off
	Inquiries        int    // questions Ottu's Payment Status Query answered this pass
	InquiryErrors    int    // questions that got no verdict (no answer, an error, an answer that is not one)
	Swept            int    // of the Inquiries, those the completeness sweep asked
	Paged            int    // findings posted to Alertmanager as firing
	PagesOwed        int    // resolved notifications no Alertmanager took yet
	InquiryError     string // why the pass asked Ottu nothing, or stopped asking
	AlertError       string
	Error            string
}

// MaxFailedListed bounds the failed parents a run records by name; when more
// failed, the next pass is a full one.
const MaxFailedListed = 1000

// LastPass is what the next pass needs of the passes before it.
type LastPass struct {
	Started        time.Time // start of the last pass that succeeded
	Watermark      time.Time // its Watermark
	LastFull       time.Time // start of the last full pass that succeeded; zero if none
	ParentsFailed  int
	FailedSessions []string
}

// Store is what a pass reads and writes. The ClickHouse adapter implements it.
type Store interface {
	// LastPass describes the last pass that succeeded; false if none did.
	LastPass(ctx context.Context) (LastPass, bool, error)
	// Watermark is the store's clock now: every delivery stored from now on
	// has a stored time at or after it.
	Watermark(ctx context.Context) (time.Time, error)
	// OpenFindings returns every finding a pass left open (a person may
	// have resolved some of them since: Decisions).
	OpenFindings(ctx context.Context) ([]Record, error)
	// Decisions returns what people decided in the console: by finding,
	// and the mute rules.
	Decisions(ctx context.Context) (Decisions, error)
	// Parents streams the selected parents to fn, one at a time. A parent the
	// store could not read whole comes with Err set.
	Parents(ctx context.Context, sel Selection, fn func(*Parent) error) error
	// SaveFindings writes new versions of findings.
	SaveFindings(ctx context.Context, recs []Record) error
	// SaveRun records a pass.
	SaveRun(ctx context.Context, run Run) error
	// InquiryCandidates returns the parents to ask Ottu about (q), most
	// severe first, leaving out those Ottu's throttle does not allow yet.
	InquiryCandidates(ctx context.Context, q InquiryQuery) ([]string, error)
	// SweepCandidates returns what the completeness sweep asks Ottu about
	// (q), oldest first, leaving out what Ottu's throttle does not allow yet.
	SweepCandidates(ctx context.Context, q SweepQuery) ([]Question, error)
}

// Alert is what one delivery carries: findings not yet alerted (or published).
type Alert struct {
	RunID    string
	Findings []Record
}

// ErrAlertRefused means the receiver refused an alert for what it carries (too
// large, or a finding it cannot take): a smaller alert may pass, so the
// reconciler splits it. A Notifier wraps it in the errors it returns.
var ErrAlertRefused = errors.New("alert refused by the receiver")

// Notifier delivers an alert. retryable tells whether trying the same alert
// again may help.
type Notifier interface {
	Notify(ctx context.Context, a Alert) (retryable bool, err error)
}

// Publisher announces findings (NATS recon.findings) and returns once the
// announcement is durably acknowledged.
type Publisher interface {
	PublishFindings(ctx context.Context, a Alert) error
}

// Reconciler runs reconciliation passes. Set the fields, then call Run.
type Reconciler struct {
	Store     Store
	Config    Config
	Notifier  Notifier  // optional: ALERT_WEBHOOK_URL
	Publisher Publisher // optional
	Inquirer  Inquirer  // optional: OTTU_API_URL
	Pager     Pager     // optional: ALERTMANAGER_URL
	// InquiryLimit caps the questions to Ottu in one pass (default 30, Ottu's
	// limit for a minute).
	InquiryLimit int
	Now          func() time.Time
	// AlertLimit caps the findings alerted in one pass, most severe and
	// oldest first; the rest go in the next pass. Default 1000.
	AlertLimit int
	// Parts remembers, across passes, how many findings the receiver takes
	// in one alert (nil: learnt afresh each pass).
	Parts *AlertParts
	// PublishChunk caps the findings in one recon.findings message. Default 200.
	PublishChunk int
	// NotifyAttempts is how often a retryable alert failure is tried within
	// one pass (default 3); what still fails is tried at the next pass.
	NotifyAttempts int
	// InquiryBudget bounds the questions to Ottu in one pass (default: a
	// quarter of the time the pass has left when it starts asking). They are
	// asked last, after every finding is written and alerted.
	InquiryBudget time.Duration
	// Reserve is the time kept back from the pass's deadline to record what
	// it did (default a tenth of the time left, at most 2s): alerting and
	// asking stop that much earlier.
	Reserve time.Duration
	// FullEvery is the longest time between two full passes
	// (RECON_FULL_EVERY); 0 never forces one after the first.
	FullEvery time.Duration
	// OnParentError, if set, is told about each parent a pass could not
	// evaluate (the pass goes on; the next pass retries the parent).
	OnParentError func(sessionID string, err error)
	// Guard, if set, is asked before every write and every alert: an error
	// (the pass lease was lost) stops the pass there, and nothing more of it
	// is written, not even its run record.
	Guard func() error
	// saveChunk bounds the findings buffered before a write.
	saveChunk int
}

// Margin is how far before the last pass a pass looks for changes: it covers
// deliveries whose store was in flight while the last pass read (a store
// attempt is bounded well below it) and clock skew between hosts.
const Margin = 2 * time.Minute

// Run runs one pass: evaluate the selected parents, raise, refresh and resolve
// findings, publish and alert what is owed, record the run. An error means the
// pass itself failed; a failed alert does not fail the pass (it is reported
// and retried at the next pass), nor does a parent that cannot be evaluated
// (it is counted and retried at the next pass).
func (r *Reconciler) Run(ctx context.Context) (Run, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	run := Run{ID: newRunID(now()), Started: now().UTC().Truncate(time.Second)}
	err := r.pass(ctx, &run)
	run.Finished = now().UTC()
	if err != nil {
		run.Error = err.Error()
	}
	if gerr := r.guard(); gerr != nil {
		return run, errors.Join(err, gerr)
	}
	// Record the run even when the pass failed, unless the store is the
	// reason (then this fails too, and the error says so).
	if serr := r.Store.SaveRun(context.WithoutCancel(ctx), run); serr != nil {
		err = errors.Join(err, fmt.Errorf("save run: %w", serr))
	}
	return run, err
}

func (r *Reconciler) guard() error {
	if r.Guard == nil {
		return nil
	}
	return r.Guard()
}

func newRunID(t time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// selection decides what a pass at t evaluates.
func (r *Reconciler) selection(last LastPass, ok bool, t time.Time) Selection {
	switch {
	case !ok:
		return Selection{All: true} // the first pass
	case r.FullEvery > 0 && (last.LastFull.IsZero() || t.Sub(last.LastFull) >= r.FullEvery):
		return Selection{All: true}
	case last.ParentsFailed > len(last.FailedSessions):
		return Selection{All: true} // more failed than were named
	}
	return Selection{
		StoredSince: last.Watermark.Add(-Margin),
		Windows:     Windows(r.Config, last.Started, t),
		Sessions:    last.FailedSessions,
	}
}

func (r *Reconciler) pass(ctx context.Context, run *Run) error {
	t := run.Started
	wm, err := r.Store.Watermark(ctx)
	if err != nil {
		return fmt.Errorf("read the store's clock: %w", err)
	}
	run.Watermark = wm.UTC()
	last, ok, err := r.Store.LastPass(ctx)
	if err != nil {
		return fmt.Errorf("read last pass: %w", err)
	}
	sel := r.selection(last, ok, t)
	run.Full = sel.All

	openList, err := r.Store.OpenFindings(ctx)
	if err != nil {
		return fmt.Errorf("read open findings: %w", err)
	}
	open := make(map[string][]Record, len(openList))
	for _, rec := range openList {
		open[rec.SessionID] = append(open[rec.SessionID], rec)
	}
	decisions, err := r.Store.Decisions(ctx)
	if err != nil {
		return fmt.Errorf("read the console's actions: %w", err)
	}

	chunk := r.saveChunk
	if chunk <= 0 {
		chunk = 5000
	}
	var batch, owed, firing []Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.guard(); err != nil {
			return err
		}
		if err := r.Store.SaveFindings(ctx, batch); err != nil {
			return fmt.Errorf("save findings: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	stillOpen := func(rec Record) {
		s := decisions.Of(rec.Key(), rec.Stake.Gateway, rec.Stake.Currency)
		if !s.ResolvedByHand(rec.Evidence) {
			run.Open++
			if !s.Quiet(rec.Evidence, t) {
				firing = append(firing, rec)
			}
		}
		if (rec.AlertedAt.IsZero() || rec.PublishedAt.IsZero()) && !s.Quiet(rec.Evidence, t) {
			owed = append(owed, rec)
		}
	}
	err = r.Store.Parents(ctx, sel, func(p *Parent) error {
		run.ParentsEvaluated++
		prev := open[p.SessionID]
		delete(open, p.SessionID)
		fired, err := evaluate(p, r.Config, t)
		if err != nil {
			// Nothing is known of this parent this time: its findings stay
			// as they are (open, still owed), and the next pass retries it.
			run.ParentsFailed++
			if len(run.FailedSessions) < MaxFailedListed {
				run.FailedSessions = append(run.FailedSessions, p.SessionID)
			}
			if r.OnParentError != nil {
				r.OnParentError(p.SessionID, err)
			}
			for _, rec := range prev {
				stillOpen(rec)
			}
			return nil
		}
		evidence, stake := Evidence(p), StakeOf(p)
		for _, f := range fired {
			rec := Record{Finding: f, Status: StatusOpen, FirstSeen: t, LastSeen: t, RunID: run.ID, Evidence: evidence, Stake: stake}
			if i := indexOf(prev, f.Code); i >= 0 {
				rec.FirstSeen, rec.AlertedAt, rec.PublishedAt = prev[i].FirstSeen, prev[i].AlertedAt, prev[i].PublishedAt
				rec.AlertRefusals, rec.AlertRetryAt = prev[i].AlertRefusals, prev[i].AlertRetryAt
				if evidence != prev[i].Evidence && decisions.Of(f.Key(), stake.Gateway, stake.Currency).Settled(prev[i].Evidence) {
					// A person acknowledged or resolved it; new evidence
					// arrived and the rule still fires: it is reopened,
					// and theirs to look at again.
					rec.AlertedAt, rec.PublishedAt, rec.AlertRefusals, rec.AlertRetryAt = time.Time{}, time.Time{}, 0, time.Time{}
				}
				prev = append(prev[:i], prev[i+1:]...)
			} else {
				run.Raised++
			}
			stillOpen(rec)
			batch = append(batch, rec)
		}
		for _, rec := range prev { // open before, no longer firing
			rec.Status, rec.ResolvedAt, rec.LastSeen, rec.RunID = StatusResolved, t, t, run.ID
			run.Resolved++
			batch = append(batch, rec)
		}
		if len(batch) >= chunk {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("evaluate parents: %w", err)
	}
	if err := flush(); err != nil {
		return err
	}
	// Open findings of parents the store did not return (not selected, or
	// their data is gone): still open, still owed what they are owed.
	for _, recs := range open {
		for _, rec := range recs {
			stillOpen(rec)
		}
	}
	// What follows talks to neighbours (NATS, the alert receiver, Ottu),
	// any of which may hang: each phase stops in time for the run to be
	// recorded, and what it did not finish is owed to the next pass.
	phase, cancel := r.withReserve(ctx)
	defer cancel()
	if err := r.deliver(ctx, phase, run, owed, t); err != nil {
		return err
	}
	if r.Pager != nil {
		if err := r.page(phase, run, firing, t); err != nil {
			return err
		}
	}
	if r.Inquirer != nil {
		return r.inquire(phase, run, t)
	}
	return nil
}

// withReserve is ctx ending Reserve before ctx's deadline.
func (r *Reconciler) withReserve(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	reserve := r.Reserve
	if reserve <= 0 {
		reserve = min(2*time.Second, time.Until(deadline)/10)
	}
	return context.WithDeadline(ctx, deadline.Add(-reserve))
}

// evaluate runs the rules on p, turning a parent the store could not read,
// or a rule that panics on it, into an error for that parent alone.
func evaluate(p *Parent, cfg Config, now time.Time) (fired []Finding, err error) {
	if p.Err != nil {
		return nil, p.Err
	}
	defer func() {
		if v := recover(); v != nil {
			fired, err = nil, fmt.Errorf("evaluate parent %s: panic: %v", p.SessionID, v)
		}
	}()
	return Evaluate(p, cfg, now), nil
}

// summarize joins the first few errors and counts the rest.
func summarize(errs []error) string {
	const shown = 3
	var parts []string
	for _, err := range errs[:min(len(errs), shown)] {
		parts = append(parts, err.Error())
	}
	if len(errs) > shown {
		parts = append(parts, fmt.Sprintf("and %d more", len(errs)-shown))
	}
	return strings.Join(parts, "; ")
}

func indexOf(recs []Record, c Code) int {
	for i, r := range recs {
		if r.Code == c {
			return i
		}
	}
	return -1
}
