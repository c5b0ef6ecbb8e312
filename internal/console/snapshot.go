package console

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// snapshot is every finding as the findings view shows it (without its
// detail), most severe and oldest first: the findings page filters, counts
// and pages it in memory. Reading 100,000 findings through the view takes
// most of a second on ClickHouse 18.16, and the page must answer in well
// under a tenth of that. The console keeps the findings as passes wrote
// them and reads only the versions written since (versions only grow), and
// people's decisions again when they took a new action; each replica keeps
// its own. A snapshot is used while the generation
// (clickhouse.DB.FindingsGeneration) is the one it was built at.
type snapshot struct {
	gen        clickhouse.Generation
	rows       []*clickhouse.ConsoleFinding // never changed once in a snapshot
	meta       []rowMeta                    // beside rows: what the page counts, as numbers
	codes      []string                     // meta's code indexes
	gateways   []string
	currencies []string // by meta's currency indexes ("" among them)
	choices    []string // currencies, sorted, for the filter
}

// rowMeta is a finding's severity, code and currency as indexes, its times
// in Unix seconds and its amount in units of 10^-8 when it fits an int64:
// the findings page counts 100,000 of them without hashing a string or
// adding a big decimal.
type rowMeta struct {
	sev, code, cur   int
	opened, resolved int64 // resolved: 0 unless resolved
	units            int64
	exact            bool // units holds the amount exactly
}

var unitScale = decimal.New(1, events.MaxScale)

// rawFinding is a finding as a pass left it, with its numbers. It stays
// the same object for as long as the finding exists: a newer version
// replaces f (a new ConsoleFinding, so that snapshots already handed out
// keep theirs) and m.
type rawFinding struct {
	f *clickhouse.ConsoleFinding
	m rowMeta
	// decided is f with people's decisions applied, made by the build
	// numbered decidedAt.
	decided   *clickhouse.ConsoleFinding
	decidedAt int
	placed    bool // in snapshots.order at its place
}

// set makes f the finding's latest version and reads its numbers.
func (sn *snapshots) set(r *rawFinding, f clickhouse.ConsoleFinding) {
	r.f = &f
	r.m = rowMeta{sev: slices.Index(severities, f.Severity), code: -1, opened: f.FirstSeen.Unix()}
	if ci, ok := sn.codeIdx[f.Code]; ok {
		r.m.code = ci
	}
	ci, ok := sn.curIdx[f.Currency]
	if !ok {
		ci = len(sn.currencies)
		sn.curIdx[f.Currency] = ci
		sn.currencies = append(sn.currencies, f.Currency)
	}
	r.m.cur = ci
	if f.Gateway != "" && !sn.gateways[f.Gateway] {
		sn.gateways[f.Gateway] = true
	}
	if u := f.Amount.Mul(unitScale); u.IsInteger() && u.Abs().LessThan(decimal.New(1, 17)) {
		r.m.units, r.m.exact = u.IntPart(), true
	}
	r.m.resolved = resolvedAt(r.f)
}

// apply takes in the latest versions of findings (each named once).
func (sn *snapshots) apply(changed []clickhouse.ConsoleFinding) {
	for _, f := range changed {
		k := clickhouse.FindingKey{SessionID: f.SessionID, Code: f.Code}
		r := sn.raw[k]
		if r == nil {
			r = &rawFinding{}
			sn.raw[k] = r
		}
		was := r.m
		sn.set(r, f)
		if !r.placed || was.sev != r.m.sev || was.opened != r.m.opened {
			r.placed = false // its old place, if any, is dropped at the next build
			sn.moved = append(sn.moved, r)
		}
	}
}

// before is the list's order (most severe, then oldest, first) on raw
// findings, by their numbers first.
func before(a, b *rawFinding) int {
	if c := cmp.Or(cmp.Compare(a.m.sev, b.m.sev), cmp.Compare(a.m.opened, b.m.opened)); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.f.SessionID, b.f.SessionID), cmp.Compare(a.f.Code, b.f.Code))
}

func resolvedAt(f *clickhouse.ConsoleFinding) int64 {
	if f.Status == ledger.StatusResolved && f.ResolvedAt != nil {
		return f.ResolvedAt.Unix()
	}
	return 0
}

type snapshots struct {
	mu        sync.Mutex // one rebuild at a time
	raw       map[clickhouse.FindingKey]*rawFinding
	version   uint64 // the highest version in raw
	decisions map[clickhouse.FindingKey]clickhouse.Decisions
	actions   uint64 // the count of actions decisions was read at
	codes     []string
	codeIdx   map[string]int
	// Every currency and gateway seen, currencies by the index rowMeta
	// holds (a filter offers what findings ever carried).
	currencies []string
	curIdx     map[string]int
	gateways   map[string]bool
	builds     int
	// order is every raw finding in the list's order; moved are those read
	// since the last build that are new or whose place changed.
	order []*rawFinding
	moved []*rawFinding

	curM sync.RWMutex
	cur  *snapshot
}

// findings returns the current snapshot, brought up to date when findings
// changed since it was built.
func (c *Console) findings(ctx context.Context) (*snapshot, error) {
	gen, err := c.DB.FindingsGeneration(ctx)
	if err != nil {
		return nil, err
	}
	c.snaps.curM.RLock()
	cur := c.snaps.cur
	c.snaps.curM.RUnlock()
	if cur != nil && cur.gen == gen {
		return cur, nil
	}
	sn := &c.snaps
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.curM.RLock()
	cur = sn.cur
	sn.curM.RUnlock()
	if cur != nil && cur.gen == gen {
		return cur, nil // brought up to date meanwhile by another request
	}
	start := time.Now()
	if gen.Version < sn.version { // the table was emptied or rebuilt: read it whole
		sn.raw, sn.version, sn.order, sn.moved = nil, 0, nil, nil
	}
	if sn.raw == nil {
		sn.raw = map[clickhouse.FindingKey]*rawFinding{}
		sn.codes = codes()
		sn.codeIdx = map[string]int{}
		for i, c := range sn.codes {
			sn.codeIdx[c] = i
		}
		sn.currencies, sn.curIdx, sn.gateways = nil, map[string]int{}, map[string]bool{}
	}
	changed, top, err := c.DB.FindingStates(ctx, sn.version)
	if err != nil {
		return nil, err
	}
	sn.apply(changed)
	sn.version = max(sn.version, top)
	if sn.decisions == nil || gen.Actions != sn.actions {
		if sn.decisions, err = c.DB.Decisions(ctx); err != nil {
			return nil, err
		}
		sn.actions = gen.Actions
	}
	s := sn.build()
	sn.curM.Lock()
	sn.cur = s
	sn.curM.Unlock()
	c.Log.Debug().Int("findings", len(s.rows)).Int("read", len(changed)).Dur("took", time.Since(start)).Msg("console: findings brought up to date")
	return s, nil
}

// build makes a snapshot of raw with people's decisions applied, in the
// list's order. Rows no one decided about are shared with raw, not copied.
func (sn *snapshots) build() *snapshot {
	sn.builds++
	s := &snapshot{gen: clickhouse.Generation{Version: sn.version, Actions: sn.actions}, codes: sn.codes,
		currencies: slices.Clone(sn.currencies)}
	for g := range sn.gateways {
		s.gateways = append(s.gateways, g)
	}
	slices.Sort(s.gateways)
	for _, c := range s.currencies {
		if c != "" {
			s.choices = append(s.choices, c)
		}
	}
	slices.Sort(s.choices)
	// People's decisions: a copy of each finding they touched, overlaid.
	for k, d := range sn.decisions {
		if r := sn.raw[k]; r != nil {
			f := *r.f
			clickhouse.Overlay(&f, d)
			r.decided, r.decidedAt = &f, sn.builds
		}
	}
	// The list's order: the findings read since the last build that are
	// new or moved, sorted, merged into the order kept from before (one
	// pass, no sort of the whole).
	slices.SortFunc(sn.moved, before)
	sn.moved = slices.CompactFunc(sn.moved, func(a, b *rawFinding) bool { return a == b })
	order := make([]*rawFinding, 0, len(sn.raw))
	i, j := 0, 0
	for i < len(sn.order) || j < len(sn.moved) {
		switch {
		case i < len(sn.order) && !sn.order[i].placed:
			i++ // moved: it comes from sn.moved
		case j < len(sn.moved) && (i == len(sn.order) || before(sn.moved[j], sn.order[i]) < 0):
			order = append(order, sn.moved[j])
			j++
		default:
			order = append(order, sn.order[i])
			i++
		}
	}
	for _, r := range sn.moved {
		r.placed = true
	}
	sn.order, sn.moved = order, sn.moved[:0]
	s.rows, s.meta = make([]*clickhouse.ConsoleFinding, len(order)), make([]rowMeta, len(order))
	for i, r := range order {
		s.rows[i], s.meta[i] = r.f, r.m
		if r.decidedAt == sn.builds {
			s.rows[i] = r.decided
			s.meta[i].resolved = resolvedAt(r.decided)
		}
	}
	return s
}

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
func statusOf(f *clickhouse.ConsoleFinding) string {
	switch {
	case f.Status == ledger.StatusResolved:
		return "resolved"
	case f.AcknowledgedBy != "":
		return "acknowledged"
	}
	return "open"
}

// matcher tells which findings f selects; withStatus false ignores its status.
func (c *Console) matcher(ctx context.Context, f Filter, now time.Time) (func(x *clickhouse.ConsoleFinding, withStatus bool) bool, error) {
	var sessions map[string]bool
	if f.Search != "" {
		list, err := c.DB.SessionsByKey(ctx, f.Search)
		if err != nil {
			return nil, err
		}
		sessions = map[string]bool{}
		for _, s := range list {
			sessions[s] = true
		}
	}
	return func(x *clickhouse.ConsoleFinding, withStatus bool) bool {
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
func (c *Console) withDetails(ctx context.Context, rows []clickhouse.ConsoleFinding) error {
	keys := make([]clickhouse.FindingKey, len(rows))
	for i, r := range rows {
		keys[i] = clickhouse.FindingKey{SessionID: r.SessionID, Code: r.Code}
	}
	details, err := c.DB.FindingDetails(ctx, keys)
	if err != nil {
		return err
	}
	for i := range rows {
		rows[i].Detail = details[keys[i]]
	}
	return nil
}

// Refresh brings the findings up to date every interval until ctx ends, so
// that the page a person opens after a pass rarely waits for the findings
// it wrote: a page still brings them up to date itself when they changed
// since (a person's action, a pass in the last interval).
func (c *Console) Refresh(ctx context.Context, every time.Duration) {
	c.init()
	if _, err := c.findings(ctx); err != nil && ctx.Err() == nil { // the first read, before anyone asks
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
			if _, err := c.findings(ctx); err != nil && ctx.Err() == nil {
				c.Log.Debug().Err(err).Msg("console: findings not brought up to date; the next page tries again")
			}
		}
	}
}
