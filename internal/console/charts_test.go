package console

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// wellFormed parses svg as XML and returns its <title> texts.
func wellFormed(t *testing.T, svg string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	var titles []string
	inTitle := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed SVG: %v\n%s", err, svg)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			if x.Name.Local == "script" || x.Name.Local == "foreignObject" {
				t.Fatalf("<%s> in a chart", x.Name.Local)
			}
			for _, a := range x.Attr {
				if strings.HasPrefix(a.Name.Local, "on") || a.Name.Local == "style" {
					t.Fatalf("attribute %s in a chart (the CSP allows neither)", a.Name.Local)
				}
			}
			inTitle = x.Name.Local == "title"
		case xml.CharData:
			if inTitle {
				titles = append(titles, string(x))
			}
		case xml.EndElement:
			inTitle = false
		}
	}
	return titles
}

func TestCharts(t *testing.T) {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	days := []DayCounts{
		{Day: day, Opened: map[string]uint64{"critical": 3, "info": 1}, Resolved: map[string]uint64{"warning": 2}},
		{Day: day.AddDate(0, 0, 1), Opened: map[string]uint64{}, Resolved: map[string]uint64{}},
	}
	titles := wellFormed(t, string(dailyChart(days)))
	for _, want := range []string{"2026-12-01: 3 critical opened", "2026-12-01: 1 info opened", "2026-12-01: 2 warning resolved"} {
		if !strings.Contains(strings.Join(titles, "|"), want) {
			t.Errorf("daily chart lacks the title %q: %v", want, titles)
		}
	}
	stakes := []Stake{
		{Code: "OVER_REFUND", Currency: "KWD", Amount: decimal.RequireFromString("12.5"), Count: 2},
		{Code: "<b>", Currency: "USD", Amount: decimal.RequireFromString("3"), Count: 1},
	}
	svg := string(stakeChart(stakes, decimalsOf))
	titles = wellFormed(t, svg)
	if !strings.Contains(strings.Join(titles, "|"), "OVER_REFUND: 12.500 KWD in 2 open findings") || strings.Contains(svg, "<b>") {
		t.Errorf("stake chart: %v", titles)
	}
	points := []AmountPoint{{At: day, Paid: decimal.NewFromInt(10)}, {At: day.Add(time.Hour), Paid: decimal.NewFromInt(10), Refunded: decimal.NewFromInt(4)}}
	titles = wellFormed(t, string(amountsChart(points, "KWD")))
	if !strings.Contains(strings.Join(titles, "|"), "refunded 4") {
		t.Errorf("amounts chart: %v", titles)
	}
	if stakeChart(nil, decimalsOf) != "" || amountsChart(nil, "") != "" {
		t.Error("an empty chart is drawn")
	}
}
