package ledger

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// VersionID identifies one version of a finding: its parent, code, when it
// was first seen, its detail and its evidence (a finding reopened on new
// evidence is a new version, which a receiver must not drop). An alert or announcement that carries the
// same version again (a crash between "sent" and "recorded") carries the same
// id, so a receiver can drop the copy.
func (r Record) VersionID() string {
	h := sha256.New()
	for _, s := range []string{r.SessionID, string(r.Code), strconv.FormatInt(r.FirstSeen.Unix(), 10), r.Detail, r.Evidence} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// PartID identifies a set of finding versions, whatever their order: the
// id of an alert or announcement that carries exactly them.
func PartID(recs []Record) string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.VersionID()
	}
	slices.Sort(ids)
	sum := sha256.Sum256([]byte(strings.Join(ids, ",")))
	return hex.EncodeToString(sum[:16])
}

// AlertParts remembers how many findings the alert receiver took in one
// alert, so that a receiver that takes one finding at a time is not first
// sent every larger alert again at every pass. What it learnt is forgotten
// after Forget (default 1h): a receiver may have been fixed.
type AlertParts struct {
	Forget time.Duration

	mu      sync.Mutex
	size    int
	learned time.Time
}

func (p *AlertParts) get(def int, now time.Time) int {
	if p == nil {
		return def
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.size == 0 || now.Sub(p.learned) > cmp.Or(p.Forget, time.Hour) {
		return def
	}
	return min(p.size, def)
}

func (p *AlertParts) learn(size int, now time.Time) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.size, p.learned = size, now
}

// ParkFor is how long a finding the receiver refused alone waits before it is
// sent again, after its nth refusal: 10 minutes, doubling up to a day. It is
// never dropped.
func ParkFor(n int) time.Duration {
	d := 10 * time.Minute
	for i := 1; i < n && d < 24*time.Hour; i++ {
		d *= 2
	}
	return min(d, 24*time.Hour)
}

// ErrOutOfTime means a phase of the pass stopped because the pass's time was
// spent; what it did not do is owed to the next pass.
var ErrOutOfTime = errors.New("out of time: the rest is left for the next pass")

// deliver announces on recon.findings what JetStream has not acknowledged yet
// and alerts what was not alerted yet (most severe, then oldest, first). Each
// part is recorded on its findings the moment it is delivered, by a write the
// pass's deadline cannot cancel: a pass that runs out of time stops sending
// and forgets nothing it sent. No part is started once phase has ended, nor
// when the time left in phase is shorter than the slowest part so far; a part
// under way may use the pass's reserve (ctx) to finish, so that a receiver
// that took it is not sent it again.
func (r *Reconciler) deliver(ctx, phase context.Context, run *Run, owed []Record, t time.Time) error {
	if err := r.guard(); err != nil {
		return err
	}
	slices.SortFunc(owed, alertOrder)
	var failures []string
	if r.Publisher != nil {
		switch err := r.publish(phase, run, owed, t); {
		case err == nil:
		case errors.Is(err, errMark), errors.Is(err, errFenced):
			return err
		default:
			failures = append(failures, "publish: "+err.Error())
		}
	}
	if r.Notifier != nil {
		errs, err := r.alert(ctx, phase, run, owed, t)
		if err != nil {
			return err
		}
		if len(errs) > 0 {
			failures = append(failures, "alert: "+summarize(errs))
		}
	}
	run.AlertError = strings.Join(failures, "; ")
	return nil
}

// errFenced wraps the guard's error: the lease was lost, and the pass stops
// where it is.
var errFenced = errors.New("fenced")

func (r *Reconciler) fence() error {
	if err := r.guard(); err != nil {
		return fmt.Errorf("%w: %w", errFenced, err)
	}
	return nil
}

// errMark is a failure to record a delivery: the pass fails, so that its
// run is not taken for a success while findings are owed twice.
var errMark = errors.New("record delivered findings")

// mark records the findings recs[idx] as they are now (alerted, published,
// parked). The write does not end with the pass's context.
func (r *Reconciler) mark(ctx context.Context, run *Run, recs []Record, idx []int) error {
	out := make([]Record, len(idx))
	for j, i := range idx {
		recs[i].RunID = run.ID
		out[j] = recs[i]
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := r.Store.SaveFindings(wctx, out); err != nil {
		return fmt.Errorf("%w: %w", errMark, err)
	}
	return nil
}

func (r *Reconciler) publish(ctx context.Context, run *Run, owed []Record, t time.Time) error {
	size := cmp.Or(r.PublishChunk, 200)
	var idx []int
	for i, rec := range owed {
		if rec.PublishedAt.IsZero() {
			idx = append(idx, i)
		}
	}
	for len(idx) > 0 {
		part := idx[:min(len(idx), size)]
		if ctx.Err() != nil {
			return ErrOutOfTime
		}
		if err := r.fence(); err != nil {
			return err
		}
		if err := r.Publisher.PublishFindings(ctx, Alert{RunID: run.ID, Findings: pick(owed, part)}); err != nil {
			if ctx.Err() != nil {
				return ErrOutOfTime
			}
			return err
		}
		for _, i := range part {
			owed[i].PublishedAt = t
		}
		if err := r.mark(ctx, run, owed, part); err != nil {
			return err
		}
		idx = idx[len(part):]
	}
	return nil
}

// alert sends what is owed an alert in parts. A part the receiver refuses
// for what it carries is halved (and the size it took remembered) until the
// findings it refuses stand alone; those are parked (ParkFor), not sent at
// every pass. Any other failure, the pass's time or the lease ends this
// pass's alerting: the rest is owed to the next pass.
func (r *Reconciler) alert(ctx, phase context.Context, run *Run, owed []Record, t time.Time) (errs []error, fatal error) {
	var idx []int
	for i, rec := range owed {
		switch {
		case !rec.AlertedAt.IsZero():
		case rec.AlertRetryAt.After(t):
			run.AlertsParked++
		default:
			idx = append(idx, i)
		}
	}
	limit := cmp.Or(r.AlertLimit, 1000)
	idx = idx[:min(len(idx), limit)]
	pending := len(idx)
	size := r.Parts.get(limit, t)
	defer func() { run.AlertsPending = pending }()
	var slowest time.Duration
	for len(idx) > 0 {
		if !hasTime(phase, slowest) {
			errs = append(errs, fmt.Errorf("%d finding(s) not sent: %w", len(idx), ErrOutOfTime))
			return errs, nil
		}
		if err := r.fence(); err != nil {
			return errs, err
		}
		part := idx[:min(len(idx), size)]
		start := time.Now()
		err := r.notify(ctx, Alert{RunID: run.ID, Findings: pick(owed, part)})
		slowest = max(slowest, time.Since(start))
		switch {
		case err == nil:
			for _, i := range part {
				owed[i].AlertedAt = t
			}
			if err := r.mark(ctx, run, owed, part); err != nil {
				return errs, err
			}
			run.Alerted += len(part)
			pending -= len(part)
			idx = idx[len(part):]
		case errors.Is(err, ErrAlertRefused) && len(part) > 1:
			size = len(part) / 2
			r.Parts.learn(size, t)
		case errors.Is(err, ErrAlertRefused):
			i := part[0]
			owed[i].AlertRefusals++
			owed[i].AlertRetryAt = t.Add(ParkFor(owed[i].AlertRefusals))
			if err := r.mark(ctx, run, owed, part); err != nil {
				return errs, err
			}
			f := owed[i]
			errs = append(errs, fmt.Errorf("finding %s %s parked until %s: %w", f.SessionID, f.Code,
				f.AlertRetryAt.UTC().Format(time.RFC3339), err))
			run.AlertsParked++
			pending--
			idx = idx[1:]
		case ctx.Err() != nil:
			return append(errs, fmt.Errorf("%d finding(s) not sent: %w", len(idx), ErrOutOfTime)), nil
		default:
			return append(errs, err), nil
		}
	}
	return errs, nil
}

// hasTime tells whether ctx is not done and has at least d left.
func hasTime(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) >= d
}

// notify delivers one alert, trying a retryable failure again (with back-off)
// while the pass has time.
func (r *Reconciler) notify(ctx context.Context, a Alert) error {
	attempts := cmp.Or(r.NotifyAttempts, 3)
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

// alertOrder puts critical first, then warning, then info; oldest first.
func alertOrder(a, b Record) int {
	return cmp.Or(
		cmp.Compare(SeverityRank(b.Severity), SeverityRank(a.Severity)),
		a.FirstSeen.Compare(b.FirstSeen),
		cmp.Compare(a.SessionID, b.SessionID),
		cmp.Compare(a.Code, b.Code),
	)
}

// SeverityRank orders severities: the most severe ranks highest (critical
// 3, warning 2, info 1), an unknown one 0.
func SeverityRank(s Severity) int {
	if i := slices.Index(Severities, s); i >= 0 {
		return len(Severities) - i
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
