package ledger

import (
	"context"
	"fmt"
	"time"
)

// Pager keeps the findings that should page someone alive in a system that
// expects alerts to be re-posted until they end, such as Prometheus
// Alertmanager: told at the end of each pass every finding that fires now
// (open, neither resolved by a person, acknowledged nor muted), it posts
// them and ends, once, those it no longer hears of. A pass that cannot tell
// (the store away) does not call it; the caller asks the pager to re-post
// what it last posted, so that an outage never reads as "all resolved".
type Pager interface {
	Firing(ctx context.Context, recs []Record, now time.Time) (PageResult, error)
}

// PageResult is what one Firing call did.
type PageResult struct {
	Firing int // alerts posted as firing
	Ended  int // alerts posted as resolved (ended now)
	Owed   int // ended alerts not yet accepted by any Alertmanager: posted again next pass
}

// page hands the firing findings to the Pager within the pass's alert
// budget; a failure is recorded on the run, never the pass's.
func (r *Reconciler) page(ctx context.Context, run *Run, firing []Record, t time.Time) error {
	if err := r.fence(); err != nil {
		return err
	}
	res, err := r.Pager.Firing(ctx, firing, t)
	run.Paged, run.PagesOwed = res.Firing, res.Owed
	if err != nil {
		msg := fmt.Sprintf("alertmanager: %v", err)
		if run.AlertError != "" {
			msg = run.AlertError + "; " + msg
		}
		run.AlertError = msg
	}
	return nil
}
