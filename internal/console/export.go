package console

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
)

// exportCSV streams the findings the filter selects, as CSV.
func (c *Console) exportCSV(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r.URL.Query())
	// What the export reads is read before anything is answered: a store
	// that cannot be read is an error status, never an empty file.
	snap, err := c.findings(r.Context())
	if err != nil {
		c.failErr(w, r, "read the findings", err)
		return
	}
	match, err := c.matcher(r.Context(), f, c.now().UTC())
	if err != nil {
		c.failErr(w, r, "search", err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="findings-%s.csv"`, c.now().UTC().Format("20060102T150405Z")))
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"session_id", "code", "severity", "status", "first_seen", "last_seen", "resolved_at", "amount", "currency_code",
		"gateway", "acknowledged_by", "acknowledged_at", "resolved_by", "muted_until", "detail"})
	err = c.export(r.Context(), w, cw, snap, match)
	cw.Flush()
	if err != nil {
		// The header is gone: the download is aborted, so that the client
		// sees a failed transfer, never a short file that reads as whole.
		c.Log.Error().Err(err).Msg("console: CSV export aborted")
		panic(http.ErrAbortHandler)
	}
	c.Log.Info().Str("user", current(r).User).Msg("console: findings exported")
}

// export writes the findings match selects, their details read a chunk at
// a time, flushing each chunk to the client.
func (c *Console) export(ctx context.Context, w http.ResponseWriter, cw *csv.Writer, snap *snapshot,
	match func(*casefile.Finding, bool) bool) error {
	const chunk = 1000
	var batch []casefile.Finding
	flush := func() error {
		if err := c.withDetails(ctx, batch); err != nil {
			return err
		}
		for _, x := range batch {
			row := []string{x.SessionID, x.Code, x.Severity, x.Status, stamp(x.FirstSeen), stamp(x.LastSeen), stampp(x.ResolvedAt),
				x.Amount.StringFixed(decimalsOf(x.Currency)), x.Currency, x.Gateway, x.AcknowledgedBy, stampp(x.AcknowledgedAt), x.ResolvedBy,
				stampp(x.MutedUntil), x.Detail}
			for i := range row { // any cell may hold a value someone posted (session_id is not signed)
				row[i] = csvSafe(row[i])
			}
			if err := cw.Write(row); err != nil {
				return err
			}
		}
		batch = batch[:0]
		cw.Flush()
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		return cw.Error()
	}
	for i := range snap.rows {
		if match(snap.rows[i], true) {
			batch = append(batch, *snap.rows[i])
			if len(batch) == chunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula: one that
// starts with = + - @, a tab, a carriage return or a newline, after any
// leading spaces, is quoted with a leading apostrophe.
func csvSafe(s string) string {
	if t := strings.TrimLeft(s, " "); t != "" && strings.ContainsRune("=+-@\t\r\n", rune(t[0])) {
		return "'" + s
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func stampp(t *time.Time) string {
	if t == nil {
		return ""
	}
	return stamp(*t)
}
