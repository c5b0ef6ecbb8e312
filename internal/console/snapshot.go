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
	rows       []clickhouse.ConsoleFinding
	meta       []rowMeta // beside rows: what the page counts, as numbers
	codes      []string  // meta's code indexes
	gateways   []string
	currencies []string // meta's currency indexes
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

// rawFinding is a finding as a pass left it, with its amount in units.
type rawFinding struct {
	f     clickhouse.ConsoleFinding
	units int64
	exact bool
}

func newRaw(f clickhouse.ConsoleFinding) rawFinding {
	r := rawFinding{f: f}
	if u := f.Amount.Mul(unitScale); u.IsInteger() && u.Abs().LessThan(decimal.New(1, 17)) {
		r.units, r.exact = u.IntPart(), true
	}
	return r
}

type snapshots struct {
	mu        sync.Mutex // one reload at a time
	raw       map[clickhouse.FindingKey]rawFinding
	version   uint64 // the highest version in raw
	decisions map[clickhouse.FindingKey]clickhouse.Decisions
	actions   uint64 // the count of actions decisions was read at

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
		sn.raw, sn.version = nil, 0
	}
	if sn.raw == nil {
		sn.raw = map[clickhouse.FindingKey]rawFinding{}
	}
	changed, top, err := c.DB.FindingStates(ctx, sn.version)
	if err != nil {
		return nil, err
	}
	for _, f := range changed {
		sn.raw[clickhouse.FindingKey{SessionID: f.SessionID, Code: f.Code}] = newRaw(f)
	}
	sn.version = max(sn.version, top)
	if sn.decisions == nil || gen.Actions != sn.actions {
		if sn.decisions, err = c.DB.Decisions(ctx); err != nil {
			return nil, err
		}
		sn.actions = gen.Actions
	}
	s := &snapshot{gen: clickhouse.Generation{Version: sn.version, Actions: sn.actions}, codes: codes()}
	codeIdx, curIdx := map[string]int{}, map[string]int{}
	for i, c := range s.codes {
		codeIdx[c] = i
	}
	gw := map[string]bool{}
	rows := make([]clickhouse.ConsoleFinding, 0, len(sn.raw))
	meta := make([]rowMeta, 0, len(sn.raw))
	for k, r := range sn.raw {
		f := r.f
		if d, ok := sn.decisions[k]; ok {
			clickhouse.Overlay(&f, d)
		}
		m := rowMeta{sev: slices.Index(severities, f.Severity), code: -1, opened: f.FirstSeen.Unix(), units: r.units, exact: r.exact}
		if ci, ok := codeIdx[f.Code]; ok {
			m.code = ci
		}
		if f.Status == ledger.StatusResolved && f.ResolvedAt != nil {
			m.resolved = f.ResolvedAt.Unix()
		}
		if f.Gateway != "" && !gw[f.Gateway] {
			gw[f.Gateway] = true
			s.gateways = append(s.gateways, f.Gateway)
		}
		if _, ok := curIdx[f.Currency]; !ok && f.Currency != "" {
			curIdx[f.Currency] = -1
			s.currencies = append(s.currencies, f.Currency)
		}
		rows = append(rows, f)
		meta = append(meta, m)
	}
	slices.Sort(s.gateways)
	slices.Sort(s.currencies)
	s.currencies = append(s.currencies, "") // findings with no currency last
	for i, c := range s.currencies {
		curIdx[c] = i
	}
	// The list's order (most severe, then oldest, first), sorting indexes
	// by numbers first: 100,000 findings sort in a few milliseconds.
	order := make([]int32, len(rows))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int {
		a, b := &meta[i], &meta[j]
		return cmp.Or(cmp.Compare(a.sev, b.sev), cmp.Compare(a.opened, b.opened),
			cmp.Compare(rows[i].SessionID, rows[j].SessionID), cmp.Compare(rows[i].Code, rows[j].Code))
	})
	s.rows, s.meta = make([]clickhouse.ConsoleFinding, len(rows)), make([]rowMeta, len(rows))
	for to, from := range order {
		s.rows[to], s.meta[to] = rows[from], meta[from]
		s.meta[to].cur = curIdx[rows[from].Currency]
	}
	sn.curM.Lock()
	sn.cur = s
	sn.curM.Unlock()
	c.Log.Debug().Int("findings", len(s.rows)).Int("read", len(changed)).Dur("took", time.Since(start)).Msg("console: findings brought up to date")
	return s, nil
}

// byListOrder is the list's order: most severe, then oldest, first.
func byListOrder(a, b clickhouse.ConsoleFinding) int {
	return cmp.Or(
		cmp.Compare(ledger.SeverityRank(ledger.Severity(b.Severity)), ledger.SeverityRank(ledger.Severity(a.Severity))),
		a.FirstSeen.Compare(b.FirstSeen),
		cmp.Compare(a.SessionID, b.SessionID),
		cmp.Compare(a.Code, b.Code))
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
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.findings(ctx); err != nil && ctx.Err() == nil {
				c.Log.Debug().Err(err).Msg("console: findings not brought up to date; the next page tries again")
			}
		}
	}
}
