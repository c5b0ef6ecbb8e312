package console

import (
	"context"
	"slices"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Filter selects findings for the list, its counts and its export.
type Filter struct {
	// Status is "open" (open, nobody acknowledged it: the default),
	// "acknowledged" (open, acknowledged), "resolved", or "all".
	Status   string
	Code     string
	Severity string
	// OlderThan keeps findings first seen at least this long ago (0: any age).
	OlderThan time.Duration
	Gateway   string
	Currency  string
	// Search is a session_id, an order_no or a reference_number (of the
	// payment or of an operation): the findings of the parents it names.
	Search string
}

// statusOf is a finding's status as the list's filter names it.
func statusOf(f *casefile.Finding) string {
	switch {
	case f.Status == ledger.StatusResolved:
		return "resolved"
	case f.AcknowledgedBy != "":
		return "acknowledged"
	}
	return "open"
}

// matcher tells which findings f selects; withStatus false ignores its status.
func (c *Console) matcher(ctx context.Context, f Filter, now time.Time) (func(x *casefile.Finding, withStatus bool) bool, error) {
	var sessions map[string]bool
	if f.Search != "" {
		list, err := c.Store.SessionsByKey(ctx, f.Search)
		if err != nil {
			return nil, err
		}
		sessions = map[string]bool{}
		for _, s := range list {
			sessions[s] = true
		}
	}
	return func(x *casefile.Finding, withStatus bool) bool {
		switch {
		case withStatus && f.Status != "all" && statusOf(x) != f.Status,
			f.Code != "" && x.Code != f.Code,
			f.Severity != "" && x.Severity != f.Severity,
			f.OlderThan > 0 && now.Sub(x.FirstSeen) < f.OlderThan,
			f.Gateway != "" && x.Gateway != f.Gateway,
			f.Currency != "" && x.Currency != f.Currency,
			sessions != nil && !sessions[x.SessionID]:
			return false
		}
		return true
	}, nil
}

// withDetails fills the details of rows.
func (c *Console) withDetails(ctx context.Context, rows []casefile.Finding) error {
	keys := make([]ledger.Key, len(rows))
	for i := range rows {
		keys[i] = rows[i].Key()
	}
	details, err := c.Store.FindingDetails(ctx, keys)
	if err != nil {
		return err
	}
	for i := range rows {
		rows[i].Detail = details[keys[i]]
	}
	return nil
}

// ResyncEvery is how often a replica reads every finding and decision
// again, whatever it was told: the safety net under the feed.
const ResyncEvery = 10 * time.Minute

// Refresh keeps the findings up to date until ctx ends: it listens to the
// other replicas (Feed), reads what they tell every interval, so that the
// page a person opens after a pass rarely waits for the findings it wrote,
// and reads everything again every ResyncEvery.
func (c *Console) Refresh(ctx context.Context, every time.Duration) {
	c.init()
	stop := c.listen()
	defer stop()
	if _, err := c.update(ctx, true); err != nil && ctx.Err() == nil { // the first read, before anyone asks
		c.Log.Debug().Err(err).Msg("console: findings not read yet; the next page tries again")
	}
	c.readCoverage(ctx, &c.coverage)
	covered := c.now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Once a minute; every tick while nothing was expected yet (an
			// empty reading is cheap, and the first pass fills it).
			if cov := c.coverage.Load(); c.now().Sub(covered) >= coverageEvery || cov == nil || cov.Expected == 0 {
				c.readCoverage(ctx, &c.coverage)
				covered = c.now()
			}
			if _, err := c.update(ctx, c.forget()); err != nil && ctx.Err() == nil {
				c.Log.Debug().Err(err).Msg("console: findings not brought up to date; the next page tries again")
			}
		}
	}
}

// forget drops what this replica was told longer than two ResyncEvery
// ago: full reads since have read it, or it will never be visible. It
// tells whether a full read is due, and marks the snapshot for another
// look when versions are still to be read.
func (c *Console) forget() (full bool) {
	sn := &c.snaps
	now := c.now()
	sn.inMu.Lock()
	sn.recent = slices.DeleteFunc(sn.recent, func(h heard) bool { return now.Sub(h.at) > 2*ResyncEvery })
	n := len(sn.ranges)
	sn.ranges = slices.DeleteFunc(sn.ranges, func(r versionRange) bool { return now.Sub(r.Since) > 2*ResyncEvery })
	dropped, pending := n-len(sn.ranges), len(sn.ranges) > 0
	sn.inMu.Unlock() // never held with mu: update takes mu, then inMu
	if dropped > 0 {
		c.Log.Warn().Int("ranges", dropped).Msg("console: finding versions a pass wrote never became visible; the full reads have what there is")
	}
	if pending {
		sn.dirty.Store(true)
	}
	sn.mu.Lock()
	full = now.Sub(sn.fullAt) >= ResyncEvery
	sn.mu.Unlock()
	return full
}
