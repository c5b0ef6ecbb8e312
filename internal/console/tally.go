package console

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// listing is what the findings page shows of a filter.
type listing struct {
	rows      []casefile.Finding // the page's, from first
	total     uint64             // findings the filter selects
	cells     []*countCell       // per code, by severity, most numerous first
	sevTotals []uint64           // per severity
	days      []DayCounts        // opened and resolved per day, from since
	stakes    []Stake            // money at stake per code and currency
}

type countCell struct {
	Code   string
	Counts []uint64 // by severity, most severe first
	Total  uint64
}

// tally runs once through the findings: the page's rows (PageSize of
// them, from first), the counts per code and severity of the findings
// match selects; and, whatever their status (as match without it), the
// findings opened and resolved per day over chartDays days from since, and
// the money at stake in those not resolved. It counts as numbers (the
// snapshot's rowMeta), adding big decimals only for amounts that do not fit.
func tally(snap *snapshot, match func(*casefile.Finding, bool) bool, since time.Time, first int) listing {
	nc, ns, ncur := len(snap.codes), len(severities), len(snap.currencies)
	counts := make([]uint64, nc*ns)
	opened, resolved := make([]uint64, chartDays*ns), make([]uint64, chartDays*ns)
	units := make([]int64, nc*ncur)
	inexact := map[int]decimal.Decimal{} // stakes whose amounts do not fit units
	stakeN := make([]uint64, nc*ncur)
	from := since.Unix()
	dayOf := func(t int64) int {
		if t < from {
			return -1
		}
		return int((t - from) / 86400)
	}
	var l listing
	for i := range snap.rows {
		x, m := snap.rows[i], &snap.meta[i]
		if m.code < 0 || m.sev < 0 || !match(x, false) {
			continue
		}
		if d := dayOf(m.opened); d >= 0 && d < chartDays {
			opened[d*ns+m.sev]++
		}
		if m.resolved != 0 {
			if d := dayOf(m.resolved); d >= 0 && d < chartDays {
				resolved[d*ns+m.sev]++
			}
		} else if x.Status != ledger.StatusResolved {
			k := m.code*ncur + m.cur
			stakeN[k]++
			if m.exact && units[k] < 1<<62 {
				units[k] += m.units
			} else {
				inexact[k] = inexact[k].Add(x.Amount)
			}
		}
		if !match(x, true) {
			continue
		}
		if int(l.total) >= first && len(l.rows) < PageSize {
			l.rows = append(l.rows, *x)
		}
		l.total++
		counts[m.code*ns+m.sev]++
	}

	l.sevTotals = make([]uint64, ns)
	for ci, code := range snap.codes {
		cell := &countCell{Code: code, Counts: counts[ci*ns : (ci+1)*ns]}
		for si, n := range cell.Counts {
			cell.Total += n
			l.sevTotals[si] += n
		}
		if cell.Total > 0 {
			l.cells = append(l.cells, cell)
		}
	}
	slices.SortFunc(l.cells, func(a, b *countCell) int {
		for i := range severities {
			if a.Counts[i] != b.Counts[i] {
				return cmp.Compare(b.Counts[i], a.Counts[i])
			}
		}
		return strings.Compare(a.Code, b.Code)
	})
	l.days = make([]DayCounts, chartDays)
	for d := range l.days {
		l.days[d] = DayCounts{Day: since.AddDate(0, 0, d), Opened: map[string]uint64{}, Resolved: map[string]uint64{}}
		for si, sev := range severities {
			l.days[d].Opened[sev], l.days[d].Resolved[sev] = opened[d*ns+si], resolved[d*ns+si]
		}
	}
	for k, n := range stakeN {
		if n == 0 {
			continue
		}
		amount := decimal.New(units[k], -events.MaxScale).Add(inexact[k])
		l.stakes = append(l.stakes, Stake{Code: snap.codes[k/ncur], Currency: snap.currencies[k%ncur], Amount: amount, Count: n})
	}
	slices.SortFunc(l.stakes, func(a, b Stake) int {
		return cmp.Or(strings.Compare(a.Currency, b.Currency), b.Amount.Cmp(a.Amount))
	})
	return l
}
