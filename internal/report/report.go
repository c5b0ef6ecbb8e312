// Package report renders the `reconcile report` output: money totals per day,
// currency and gateway, open findings by code and severity with examples, and
// the operations done on the gateway's dashboard.
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything `reconcile report` prints.
type Report struct {
	Since    time.Time      `json:"since"`
	Totals   []Total        `json:"totals"`
	Findings []FindingGroup `json:"open_findings"`
	PGSide   []PGOperation  `json:"pg_side_operations"`
	Coverage []Coverage     `json:"coverage"`
	LastRun  *Run           `json:"last_run,omitempty"`
}

// Coverage is one UTC day of the coverage view: of what was expected
// (merchant orders by their updated_at, parents with no merchant order by
// their first delivery; an order and its parents count once), how much has a
// final state known (Accounted), known only from Ottu's record (Recovered),
// or none yet (Unknown).
type Coverage struct {
	Day       string `json:"day"`
	Expected  uint64 `json:"expected"`
	Accounted uint64 `json:"accounted"`
	Recovered uint64 `json:"recovered"`
	Unknown   uint64 `json:"unknown"`
}

// Total is the money moved on one day, in one currency, through one gateway.
// Amounts are exact decimal strings.
type Total struct {
	Day       string `json:"day"`
	Currency  string `json:"currency"`
	Gateway   string `json:"gateway"`
	Paid      string `json:"paid"`
	PaidN     uint64 `json:"paid_count"`
	Captured  string `json:"captured"`
	CapturedN uint64 `json:"captured_count"`
	Refunded  string `json:"refunded"`
	RefundedN uint64 `json:"refunded_count"`
	Voided    string `json:"voided"`
	VoidedN   uint64 `json:"voided_count"`
}

// FindingGroup counts the open findings of one code and severity.
type FindingGroup struct {
	Code     string   `json:"code"`
	Severity string   `json:"severity"`
	Count    uint64   `json:"count"`
	Examples []string `json:"examples"`
}

// PGOperation is an operation done on the gateway's dashboard (source pg).
type PGOperation struct {
	ReferenceNumber string    `json:"reference_number"`
	SessionID       string    `json:"session_id"`
	Operation       string    `json:"operation"`
	Amount          string    `json:"amount"`
	Currency        string    `json:"currency"`
	State           string    `json:"txn_state"`
	Timestamp       time.Time `json:"timestamp_utc"`
}

// Run summarizes the last reconciliation pass.
type Run struct {
	ID       string    `json:"run_id"`
	Started  time.Time `json:"started_at"`
	Parents  uint64    `json:"parents_evaluated"`
	Raised   uint64    `json:"findings_raised"`
	Resolved uint64    `json:"findings_resolved"`
	Open     uint64    `json:"findings_open"`
	Error    string    `json:"error,omitempty"`
}

// Formats are the accepted output formats.
var Formats = []string{"table", "csv", "json"}

// Write renders r in format.
func Write(w io.Writer, r Report, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "csv":
		return writeCSV(w, r)
	case "table", "":
		return writeTable(w, r)
	}
	return fmt.Errorf("unknown format %q: want one of %s", format, strings.Join(Formats, ", "))
}

func writeTable(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ottu-recon report since %s\n", r.Since.UTC().Format("2006-01-02 15:04 MST"))
	if r.LastRun != nil {
		fmt.Fprintf(tw, "last pass %s at %s: %d parents evaluated, %d raised, %d resolved, %d open%s\n",
			r.LastRun.ID, r.LastRun.Started.UTC().Format(time.RFC3339), r.LastRun.Parents, r.LastRun.Raised,
			r.LastRun.Resolved, r.LastRun.Open, errText(r.LastRun.Error))
	}
	fmt.Fprintln(tw, "\nTOTALS\nday\tcurrency\tgateway\tpaid\t#\tcaptured\t#\trefunded\t#\tvoided\t#")
	for _, t := range r.Totals {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\t%d\n", t.Day, t.Currency, t.Gateway,
			t.Paid, t.PaidN, t.Captured, t.CapturedN, t.Refunded, t.RefundedN, t.Voided, t.VoidedN)
	}
	if len(r.Totals) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	var open uint64
	for _, g := range r.Findings {
		open += g.Count
	}
	fmt.Fprintf(tw, "\nOPEN FINDINGS (%d)\nseverity\tcode\tcount\texamples\n", open)
	for _, g := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", g.Severity, g.Code, g.Count, first(g.Examples))
		for _, ex := range rest(g.Examples) {
			fmt.Fprintf(tw, "\t\t\t%s\n", ex)
		}
	}
	if len(r.Findings) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	fmt.Fprintln(tw, "\nCOVERAGE (merchant orders and parents accounted for)\nday\texpected\taccounted\trecovered\tunknown\t%")
	for _, c := range r.Coverage {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", c.Day, c.Expected, c.Accounted, c.Recovered, c.Unknown, c.Percent())
	}
	if len(r.Coverage) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	fmt.Fprintf(tw, "\nPG-SIDE OPERATIONS (%d)\ntimestamp_utc\treference\tsession_id\toperation\tamount\tstate\n", len(r.PGSide))
	for _, o := range r.PGSide {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\t%s\n", o.Timestamp.UTC().Format("2006-01-02 15:04:05"), o.ReferenceNumber,
			o.SessionID, o.Operation, o.Amount, o.Currency, o.State)
	}
	if len(r.PGSide) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	return tw.Flush()
}

// Percent is the share of what was expected that is accounted for, in
// percent to a tenth, floored (99.95 is not 100.0); "-" when nothing was
// expected.
func (c Coverage) Percent() string {
	if c.Expected == 0 {
		return "-"
	}
	tenths := c.Accounted * 1000 / c.Expected
	return fmt.Sprintf("%d.%d", tenths/10, tenths%10)
}

func errText(e string) string {
	if e == "" {
		return ""
	}
	return " (error: " + e + ")"
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return truncate(s[0])
}

func rest(s []string) []string {
	if len(s) <= 1 {
		return nil
	}
	out := make([]string, len(s)-1)
	for i, x := range s[1:] {
		out[i] = truncate(x)
	}
	return out
}

func truncate(s string) string {
	if len(s) > 140 {
		return s[:137] + "..."
	}
	return s
}

// writeCSV writes one table with a section column, so a spreadsheet can filter it.
func writeCSV(w io.Writer, r Report) error {
	cw := csv.NewWriter(w)
	rows := [][]string{{"section", "day", "currency", "gateway", "paid", "paid_count", "captured", "captured_count",
		"refunded", "refunded_count", "voided", "voided_count", "severity", "code", "count", "example",
		"reference_number", "session_id", "operation", "amount", "txn_state", "timestamp_utc",
		"expected", "accounted", "recovered", "unknown"}}
	blank := func(n int) []string { return make([]string, n) }
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	for _, t := range r.Totals {
		rows = append(rows, append([]string{"total", t.Day, t.Currency, t.Gateway, t.Paid, u(t.PaidN), t.Captured, u(t.CapturedN),
			t.Refunded, u(t.RefundedN), t.Voided, u(t.VoidedN)}, blank(14)...))
	}
	for _, g := range r.Findings {
		ex := ""
		if len(g.Examples) > 0 {
			ex = g.Examples[0]
		}
		row := append([]string{"open_finding"}, blank(11)...)
		rows = append(rows, append(append(row, g.Severity, g.Code, u(g.Count), ex), blank(10)...))
	}
	for _, o := range r.PGSide {
		row := append([]string{"pg_side_operation", "", o.Currency}, blank(13)...)
		rows = append(rows, append(append(row, o.ReferenceNumber, o.SessionID, o.Operation, o.Amount, o.State,
			o.Timestamp.UTC().Format(time.RFC3339)), blank(4)...))
	}
	for _, c := range r.Coverage {
		row := append([]string{"coverage", c.Day}, blank(20)...)
		rows = append(rows, append(row, u(c.Expected), u(c.Accounted), u(c.Recovered), u(c.Unknown)))
	}
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
