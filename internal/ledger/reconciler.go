package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
	Status     string
	FirstSeen  time.Time
	LastSeen   time.Time
	ResolvedAt time.Time // zero while open
	AlertedAt  time.Time // zero until an alert carrying it was delivered
	RunID      string    // the pass that wrote this version
}

// Selection tells the store which parents a pass evaluates.
type Selection struct {
	// All evaluates every parent (the first pass, or a full pass).
	All bool
	// Otherwise: parents with a delivery received at or after ChangedSince,
	// parents with an open finding, and parents for which a time-based rule
	// can have started to fire since ChangedSince (the store derives those
	// windows from Config and Now).
	ChangedSince time.Time
	Now          time.Time
	Config       Config
}

// Run is the record of one pass (table recon_runs).
type Run struct {
	ID               string
	Started          time.Time
	Finished         time.Time
	Full             bool
	ParentsEvaluated int
	Raised           int
	Resolved         int
	Open             int
	Alerted          int
	AlertError       string
	Error            string
}

// Store is what a pass reads and writes. The ClickHouse adapter implements it.
type Store interface {
	// LastRun returns the start of the last pass that succeeded.
	LastRun(ctx context.Context) (time.Time, bool, error)
	// OpenFindings returns every open finding.
	OpenFindings(ctx context.Context) ([]Record, error)
	// Parents streams the selected parents to fn, one at a time.
	Parents(ctx context.Context, sel Selection, fn func(*Parent) error) error
	// SaveFindings writes new versions of findings.
	SaveFindings(ctx context.Context, recs []Record) error
	// SaveRun records a pass.
	SaveRun(ctx context.Context, run Run) error
}

// Alert is what one pass sends: the findings not yet alerted.
type Alert struct {
	RunID    string
	Findings []Record
}

// Notifier delivers an alert. retryable tells whether trying again may help.
type Notifier interface {
	Notify(ctx context.Context, a Alert) (retryable bool, err error)
}

// Publisher announces the findings a pass raised (NATS recon.findings).
type Publisher interface {
	PublishFindings(ctx context.Context, a Alert) error
}

// Reconciler runs reconciliation passes. Set the fields, then call Run.
type Reconciler struct {
	Store     Store
	Config    Config
	Notifier  Notifier  // optional: ALERT_WEBHOOK_URL
	Publisher Publisher // optional
	Now       func() time.Time
	// AlertLimit caps the findings in one alert; the rest go in the next
	// pass. Default 1000.
	AlertLimit int
	// NotifyAttempts is how often a retryable alert failure is tried within
	// one pass (default 3); what still fails is tried at the next pass.
	NotifyAttempts int
	// FullEvery forces a full pass when the last one is older; 0 never.
	FullEvery time.Duration
	// saveChunk bounds the findings buffered before a write.
	saveChunk int
}

// Report is what a pass did. Its Run is also stored.
type Report = Run

// Margin is how far before the last pass's start a pass looks for changes:
// it covers deliveries stored while the last pass was running and clock skew
// between ingest and reconcile.
const Margin = 2 * time.Minute

// Run runs one pass: evaluate the selected parents, raise, refresh and resolve
// findings, alert what was not alerted yet, publish what was raised, record
// the run. An error means the pass itself failed; a failed alert does not fail
// the pass (it is reported and retried at the next pass).
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
	// Record the run even when the pass failed, unless the store is the
	// reason (then this fails too, and the error says so).
	if serr := r.Store.SaveRun(context.WithoutCancel(ctx), run); serr != nil {
		err = errors.Join(err, fmt.Errorf("save run: %w", serr))
	}
	return run, err
}

func newRunID(t time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

func (r *Reconciler) pass(ctx context.Context, run *Run) error {
	t := run.Started
	sel := Selection{All: true, Now: t, Config: r.Config}
	last, ok, err := r.Store.LastRun(ctx)
	if err != nil {
		return fmt.Errorf("read last run: %w", err)
	}
	if ok && (r.FullEvery <= 0 || t.Sub(last) < r.FullEvery) {
		sel.All = false
		sel.ChangedSince = last.Add(-Margin)
	}
	run.Full = sel.All

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
	var batch, raised, pending []Record
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.Store.SaveFindings(ctx, batch); err != nil {
			return fmt.Errorf("save findings: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	err = r.Store.Parents(ctx, sel, func(p *Parent) error {
		run.ParentsEvaluated++
		fired := Evaluate(p, r.Config, t)
		prev := open[p.SessionID]
		delete(open, p.SessionID)
		for _, f := range fired {
			rec := Record{Finding: f, Status: StatusOpen, FirstSeen: t, LastSeen: t, RunID: run.ID}
			if i := indexOf(prev, f.Code); i >= 0 {
				rec.FirstSeen, rec.AlertedAt = prev[i].FirstSeen, prev[i].AlertedAt
				prev = append(prev[:i], prev[i+1:]...)
			} else {
				run.Raised++
				raised = append(raised, rec)
			}
			if rec.AlertedAt.IsZero() {
				pending = append(pending, rec)
			}
			run.Open++
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
	// Open findings of parents the store did not return (their data is gone,
	// e.g. dropped partitions): still open, still owed an alert.
	for _, recs := range open {
		for _, rec := range recs {
			run.Open++
			if rec.AlertedAt.IsZero() {
				pending = append(pending, rec)
			}
		}
	}

	if r.Publisher != nil && len(raised) > 0 {
		if err := r.Publisher.PublishFindings(ctx, Alert{RunID: run.ID, Findings: raised}); err != nil {
			run.AlertError = "publish: " + err.Error()
		}
	}
	if r.Notifier != nil && len(pending) > 0 {
		limit := r.AlertLimit
		if limit <= 0 {
			limit = 1000
		}
		pending = pending[:min(len(pending), limit)]
		if err := r.notify(ctx, Alert{RunID: run.ID, Findings: pending}); err != nil {
			run.AlertError = joinText(run.AlertError, "alert: "+err.Error())
			return nil
		}
		for i := range pending {
			pending[i].AlertedAt = t
			pending[i].RunID = run.ID
		}
		if err := r.Store.SaveFindings(ctx, pending); err != nil {
			return fmt.Errorf("mark findings alerted: %w", err)
		}
		run.Alerted = len(pending)
	}
	return nil
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
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(wait):
			}
			wait *= 2
		}
	}
	return err
}

func indexOf(recs []Record, c Code) int {
	for i, r := range recs {
		if r.Code == c {
			return i
		}
	}
	return -1
}

func joinText(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
