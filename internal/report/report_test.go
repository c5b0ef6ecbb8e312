package report_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/report"
)

func sample() report.Report {
	return report.Report{
		Since:    time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		Totals:   []report.Total{{Day: "2026-05-14", Currency: "KWD", Gateway: "credit-card", Paid: "25.5", PaidN: 1, Captured: "0", Refunded: "5", RefundedN: 1, Voided: "0"}},
		Findings: []report.FindingGroup{{Code: "OVER_REFUND", Severity: "critical", Count: 2, Examples: []string{"s1: refunds sum to 30", "s2: refunds sum to 9"}}},
		PGSide:   []report.PGOperation{{ReferenceNumber: "shopV3B8P", SessionID: "c0ffee", Operation: "void", Amount: "40", Currency: "KWD", State: "voided"}},
		Coverage: []report.Coverage{{Day: "2026-05-13", Expected: 2001, Accounted: 2000, Recovered: 37, Unknown: 1}},
	}
}

func TestWrite(t *testing.T) {
	for _, format := range report.Formats {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := report.Write(&buf, sample(), format); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, want := range []string{"25.5", "OVER_REFUND", "shopV3B8P", "2026-05-13", "2001"} {
				if !strings.Contains(out, want) {
					t.Fatalf("%s output lacks %q:\n%s", format, want, out)
				}
			}
			switch format {
			case "json":
				var r report.Report
				if err := json.Unmarshal(buf.Bytes(), &r); err != nil || r.Findings[0].Count != 2 {
					t.Fatalf("json: %v %+v", err, r)
				}
			case "csv":
				rows, err := csv.NewReader(&buf).ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) != 5 {
					t.Fatalf("csv rows: got %d, want header + 4", len(rows))
				}
				if last := rows[4]; last[0] != "coverage" || last[1] != "2026-05-13" || last[len(last)-4] != "2001" {
					t.Fatalf("coverage row %v", last)
				}
				for _, r := range rows {
					if len(r) != len(rows[0]) {
						t.Fatalf("csv row has %d fields, header %d: %v", len(r), len(rows[0]), r)
					}
				}
			}
		})
	}
	if err := report.Write(&bytes.Buffer{}, sample(), "xml"); err == nil {
		t.Fatal("unknown format accepted")
	}
}
