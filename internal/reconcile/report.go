package reconcile

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/report"
)

// Report prints the report: reconcile report [-format table|csv|json] [-since 720h|2026-05-01].
func (m *Main) Report(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	format := fs.String("format", "table", "output format: "+strings.Join(report.Formats, ", "))
	sinceText := fs.String("since", "720h", "how far back: a duration (168h) or a date (2026-05-01)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	since, err := parseSince(*sinceText, m.Now())
	if err != nil {
		return err
	}
	if err := m.db.Open(ctx); err != nil {
		return err
	}
	defer m.db.Close()
	r, err := (&clickhouse.Store{DB: m.db}).Report(ctx, since)
	if err != nil {
		return err
	}
	return report.Write(stdout, r, *format)
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d).UTC(), nil
	}
	for _, layout := range []string{"2006-01-02", time.RFC3339, "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("-since %q: want a duration such as 168h or a date such as 2026-05-01", s)
}
