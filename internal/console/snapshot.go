package console

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// snapshot is every finding as the findings view shows it (without its
// detail), most severe and oldest first: the findings page filters, counts
// and pages it in memory. Reading 100,000 findings through the view takes
// most of a second on ClickHouse 18.16, and the page must answer in well
// under a tenth of that. Each replica keeps the findings as passes wrote
// them and people's decisions, reads the versions the feed tells it a pass
// wrote, takes in the actions and rules it hears of, and reads everything
// again every ResyncEvery (Change). A page uses the current snapshot while
// nothing changed since it was built.
type snapshot struct {
	rows       []*casefile.Finding // never changed once in a snapshot
	meta       []rowMeta           // beside rows: what the page counts, as numbers
	codes      []string            // meta's code indexes
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
// replaces f (a new Finding, so that snapshots already handed out keep
// theirs) and m.
type rawFinding struct {
	f *casefile.Finding
	m rowMeta
	// decided is f with people's decisions applied, made by the build
	// numbered decidedAt.
	decided   *casefile.Finding
	decidedAt int
	placed    bool // in snapshots.order at its place
}

// set makes f the finding's latest version and reads its numbers.
func (sn *snapshots) set(r *rawFinding, f casefile.Finding) {
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

// apply takes in versions of findings, each kept only if newer than the
// version held (versions read out of order never go back).
func (sn *snapshots) apply(changed []casefile.Finding) {
	for _, f := range changed {
		k := f.Key()
		r := sn.raw[k]
		if r == nil {
			r = &rawFinding{}
			sn.raw[k] = r
		} else if r.f.Version > f.Version {
			continue
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

func resolvedAt(f *casefile.Finding) int64 {
	if f.Status == ledger.StatusResolved && f.ResolvedAt != nil {
		return f.ResolvedAt.Unix()
	}
	return 0
}

type snapshots struct {
	mu        sync.Mutex // one rebuild at a time
	raw       map[ledger.Key]*rawFinding
	decisions ledger.Decisions
	fullAt    time.Time // when raw and decisions were last read whole
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

	// What this replica was told (Changed) and has not taken in whole.
	inMu   sync.Mutex
	ranges []versionRange
	recent []heard
	dirty  atomic.Bool // something was told since the last build

	cur atomic.Pointer[snapshot]
}

// findings returns the current snapshot, brought up to date with what this
// replica was told since it was built; full reads raw and decisions whole
// first.
func (c *Console) findings(ctx context.Context) (*snapshot, error) {
	return c.update(ctx, false)
}

func (c *Console) update(ctx context.Context, full bool) (_ *snapshot, err error) {
	sn := &c.snaps
	if cur := sn.cur.Load(); cur != nil && !full && !sn.dirty.Load() {
		return cur, nil
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if cur := sn.cur.Load(); cur != nil && !full && !sn.dirty.Load() {
		return cur, nil // brought up to date meanwhile by another request
	}
	start := time.Now()
	sn.dirty.Store(false) // what is told from now on is read next time
	defer func() {
		if err != nil {
			sn.dirty.Store(true) // not taken in: the next page tries again
		}
	}()
	sn.inMu.Lock()
	ranges, recent := sn.ranges, slices.Clone(sn.recent)
	sn.ranges = nil
	sn.inMu.Unlock()
	read := 0
	if full || sn.raw == nil {
		started := c.now()
		if err := c.readAll(ctx); err != nil {
			c.putBack(ranges)
			return nil, err
		}
		sn.fullAt, read = started, len(sn.raw)
	}
	var later []versionRange
	for i, r := range ranges {
		changed, n, rerr := c.Store.FindingStates(ctx, r.From, r.To)
		if err = rerr; err != nil {
			c.putBack(append(later, ranges[i:]...))
			return nil, err
		}
		sn.apply(changed)
		read += len(changed)
		if n < r.To-r.From+1 { // not all visible on this server yet: read again later
			later = append(later, r)
		}
	}
	c.putBack(later)
	for _, h := range recent {
		if h.rule != nil {
			casefile.TakeRule(&sn.decisions, *h.rule)
		} else {
			casefile.Take(&sn.decisions, h.action)
		}
	}
	s := sn.build()
	sn.cur.Store(s)
	c.Log.Debug().Int("findings", len(s.rows)).Int("read", read).Dur("took", time.Since(start)).Msg("console: findings brought up to date")
	return s, nil
}

// putBack keeps ranges to be read again: at the next Refresh tick, not at
// every page (a server that lags would make every page ask).
func (c *Console) putBack(ranges []versionRange) {
	if len(ranges) == 0 {
		return
	}
	sn := &c.snaps
	sn.inMu.Lock()
	sn.ranges = append(ranges, sn.ranges...)
	sn.inMu.Unlock()
}

// readAll reads every finding and every decision again, into a fresh raw.
func (c *Console) readAll(ctx context.Context) error {
	all, _, err := c.Store.FindingStates(ctx, 0, 0)
	if err != nil {
		return err
	}
	decisions, err := c.Store.Decisions(ctx)
	if err != nil {
		return err
	}
	sn := &c.snaps
	sn.raw, sn.order, sn.moved = map[ledger.Key]*rawFinding{}, nil, nil
	sn.codes = codes()
	sn.codeIdx = map[string]int{}
	for i, c := range sn.codes {
		sn.codeIdx[c] = i
	}
	sn.currencies, sn.curIdx, sn.gateways = nil, map[string]int{}, map[string]bool{}
	sn.apply(all)
	sn.decisions = decisions
	return nil
}

// build makes a snapshot of raw with people's decisions applied, in the
// list's order. Rows no one decided about are shared with raw, not copied.
func (sn *snapshots) build() *snapshot {
	sn.builds++
	s := &snapshot{codes: sn.codes, currencies: slices.Clone(sn.currencies)}
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
	// People's decisions: a copy of each finding they touched, with them
	// applied. A mute rule may touch any finding: then each is asked.
	decide := func(r *rawFinding, d ledger.Decision) {
		f := *r.f
		f.Apply(d)
		r.decided, r.decidedAt = &f, sn.builds
	}
	if len(sn.decisions.Rules) == 0 {
		for k, d := range sn.decisions.ByFinding {
			if r := sn.raw[k]; r != nil {
				decide(r, d)
			}
		}
	} else {
		for k, r := range sn.raw {
			if d := sn.decisions.Of(k, r.f.Gateway, r.f.Currency); d != (ledger.Decision{}) {
				decide(r, d)
			}
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
	s.rows, s.meta = make([]*casefile.Finding, len(order)), make([]rowMeta, len(order))
	for i, r := range order {
		s.rows[i], s.meta[i] = r.f, r.m
		if r.decidedAt == sn.builds {
			s.rows[i] = r.decided
			s.meta[i].resolved = resolvedAt(r.decided)
		}
	}
	return s
}
