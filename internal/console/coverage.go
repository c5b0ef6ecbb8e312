package console

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/report"
)

// coverageEvery is how often the console reads the coverage of the watch
// window again: it costs a query over the window's orders and deliveries
// (about 0.1 s at a million orders, docs/performance.md), too much for every
// page, and it moves with the passes, minutes apart.
const coverageEvery = time.Minute

// coverage is what the findings page shows of the coverage view: totals over
// the days of the completeness sweep's watch (CoverageWindow), as last read.
type coverage struct {
	report.Coverage
	Since time.Time
	Read  time.Time
}

// readCoverage reads the coverage of the window again; the page keeps
// showing the last good reading when ClickHouse does not answer.
func (c *Console) readCoverage(ctx context.Context, last *atomic.Pointer[coverage]) {
	window := c.CoverageWindow
	if window <= 0 || c.Coverage == nil {
		return
	}
	since := c.now().UTC().Add(-window)
	days, err := c.Coverage(ctx, since)
	if err != nil {
		c.Log.Debug().Err(err).Msg("console: coverage not read; the page shows the last reading")
		return
	}
	cov := &coverage{Since: since, Read: c.now().UTC()}
	for _, d := range days {
		cov.Expected, cov.Accounted = cov.Expected+d.Expected, cov.Accounted+d.Accounted
		cov.Recovered, cov.Unknown = cov.Recovered+d.Recovered, cov.Unknown+d.Unknown
	}
	last.Store(cov)
}
