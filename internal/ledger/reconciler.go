package ledger

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
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
	AlertsPending    int // open findings still owed an alert after this pass
	Inquiries        int // questions Ottu's Payment Status Query answered this pass
	InquiryErrors    int // questions that failed (retried at a later pass)
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
	// OpenFindings returns every open finding.
	OpenFindings(ctx context.Context) ([]Record, error)
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
	// InquiryLimit caps the questions to Ottu in one pass (default 30, Ottu's
	// limit for a minute).
	InquiryLimit int
	Now          func() time.Time
	// AlertLimit caps the findings alerted in one pass, most severe and
	// oldest first; the rest go in the next pass. Default 1000.
	AlertLimit int
	// PublishChunk caps the findings in one recon.findings message. Default 200.
	PublishChunk int
	// NotifyAttempts is how often a retryable alert failure is tried within
	// one pass (default 3); what still fails is tried at the next pass.
	NotifyAttempts int
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

// Report is what a pass did. Its Run is also stored.
type Report = Run

// Margin is how far before the last pass a pass looks for changes: it covers
// deliveries whose store was in flight while the last pass read (a store
// attempt is bounded well below it) and clock skew between hosts.
const Margin = 2 * time.Minute

// Run runs one pass: evaluate the selected parents, raise, refresh and resolve
// findings, publish and alert what is owed, record the run. An error means the
// pass itself failed; a failed alert does not fail the pass (it is reported
// and retried at the next pass), nor does a parent that cannot be evaluated
// (it is counted and retried at the next pass).
func (r *Reconciler) Run(ctx context.Context) (Report, error) {
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
	if r.Inquirer != nil {
		if err := r.guard(); err != nil {
			return err
		}
		if err := r.inquire(ctx, run, t); err != nil {
			return err
		}
	}

	openList, err := r.Store.OpenFindings(ctx)
	if err != nil {
		return fmt.Errorf("read open findings: %w", err)
	}
	open := make(map[string][]Record, len(openList))
	for _, rec := range openList {
		open[rec.SessionID] = append(open[rec.SessionID], rec)
	}

	chunk := r.saveChunk
	if chunk <= 0 {
		chunk = 5000
	}
	var batch, owed []Record
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
		run.Open++
		if rec.AlertedAt.IsZero() || rec.PublishedAt.IsZero() {
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
		for _, f := range fired {
			rec := Record{Finding: f, Status: StatusOpen, FirstSeen: t, LastSeen: t, RunID: run.ID}
			if i := indexOf(prev, f.Code); i >= 0 {
				rec.FirstSeen, rec.AlertedAt, rec.PublishedAt = prev[i].FirstSeen, prev[i].AlertedAt, prev[i].PublishedAt
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
	return r.deliver(ctx, run, owed, t)
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

// deliver announces on recon.findings what JetStream has not acknowledged yet,
// alerts what was not alerted yet (most severe, then oldest, first), and
// records both on the findings.
func (r *Reconciler) deliver(ctx context.Context, run *Run, owed []Record, t time.Time) error {
	if err := r.guard(); err != nil {
		return err
	}
	slices.SortFunc(owed, alertOrder)
	changed := make([]bool, len(owed))
	var failures []string
	if r.Publisher != nil {
		size := cmp.Or(r.PublishChunk, 200)
		var idx []int
		for i, rec := range owed {
			if rec.PublishedAt.IsZero() {
				idx = append(idx, i)
			}
		}
		for len(idx) > 0 {
			part := idx[:min(len(idx), size)]
			idx = idx[len(part):]
			if err := r.guard(); err != nil {
				failures = append(failures, "publish: "+err.Error())
				break
			}
			if err := r.Publisher.PublishFindings(ctx, Alert{RunID: run.ID, Findings: pick(owed, part)}); err != nil {
				failures = append(failures, "publish: "+err.Error())
				break
			}
			for _, i := range part {
				owed[i].PublishedAt, changed[i] = t, true
			}
		}
	}
	if r.Notifier != nil {
		var idx []int
		for i, rec := range owed {
			if rec.AlertedAt.IsZero() {
				idx = append(idx, i)
			}
		}
		limit := cmp.Or(r.AlertLimit, 1000)
		send := idx[:min(len(idx), limit)]
		delivered, errs := r.notifyAll(ctx, run.ID, owed, send)
		for _, i := range delivered {
			owed[i].AlertedAt, changed[i] = t, true
		}
		run.Alerted = len(delivered)
		run.AlertsPending = len(idx) - len(delivered)
		if len(errs) > 0 {
			failures = append(failures, "alert: "+summarize(errs))
		}
	}
	run.AlertError = strings.Join(failures, "; ")
	var marked []Record
	for i, rec := range owed {
		if changed[i] {
			rec.RunID = run.ID
			marked = append(marked, rec)
		}
	}
	if len(marked) > 0 {
		if err := r.guard(); err != nil {
			return err
		}
		if err := r.Store.SaveFindings(ctx, marked); err != nil {
			return fmt.Errorf("mark findings alerted: %w", err)
		}
	}
	return nil
}

// alertOrder puts critical first, then warning, then info; oldest first.
func alertOrder(a, b Record) int {
	return cmp.Or(
		cmp.Compare(severityRank(b.Severity), severityRank(a.Severity)),
		a.FirstSeen.Compare(b.FirstSeen),
		cmp.Compare(a.SessionID, b.SessionID),
		cmp.Compare(a.Code, b.Code),
	)
}

func severityRank(s Severity) int {
	switch s {
	case Critical:
		return 3
	case Warning:
		return 2
	case Info:
		return 1
	}
	return 0
}

func pick(recs []Record, idx []int) []Record {
	out := make([]Record, len(idx))
	for j, i := range idx {
		out[j] = recs[i]
	}
	return out
}

// notifyAll alerts recs[idx...]. An alert the receiver refuses for what it
// carries is split in halves until the findings it refuses stand alone, so
// that one finding never blocks the others; any other failure ends this
// pass's alerting (the rest is tried at the next pass).
func (r *Reconciler) notifyAll(ctx context.Context, runID string, recs []Record, idx []int) (delivered []int, errs []error) {
	var send func(part []int) (stop bool)
	send = func(part []int) bool {
		if len(part) == 0 {
			return false
		}
		if err := r.guard(); err != nil {
			errs = append(errs, err)
			return true
		}
		err := r.notify(ctx, Alert{RunID: runID, Findings: pick(recs, part)})
		switch {
		case err == nil:
			delivered = append(delivered, part...)
			return false
		case errors.Is(err, ErrAlertRefused) && len(part) > 1:
			mid := len(part) / 2
			return send(part[:mid]) || send(part[mid:])
		case errors.Is(err, ErrAlertRefused):
			f := recs[part[0]]
			errs = append(errs, fmt.Errorf("finding %s %s: %w", f.SessionID, f.Code, err))
			return false
		}
		errs = append(errs, err)
		return true
	}
	send(idx)
	return delivered, errs
}

func (r *Reconciler) notify(ctx context.Context, a Alert) error {
	attempts := r.NotifyAttempts
	if attempts <= 0 {
		attempts = 3
	}
	wait := time.Second
	var err error
	for i := 0; i < attempts; i++ {
		var retryable bool
		if retryable, err = r.Notifier.Notify(ctx, a); err == nil || !retryable {
			return err
		}
		if i < attempts-1 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(err, ctx.Err())
			case <-t.C:
			}
			wait *= 2
		}
	}
	return err
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
