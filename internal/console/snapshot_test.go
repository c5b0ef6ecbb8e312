package console

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// TestSnapshotOrder: however findings arrive (new ones, newer versions in
// place, versions that move a finding: reopened later, another severity),
// the order kept between builds is the order a full sort gives.
func TestSnapshotOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	sn := &snapshots{raw: map[ledger.Key]*rawFinding{}, codes: codes(), codeIdx: map[string]int{},
		curIdx: map[string]int{}, gateways: map[string]bool{}}
	for i, c := range sn.codes {
		sn.codeIdx[c] = i
	}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	finding := func(i int) casefile.Finding {
		return casefile.Finding{SessionID: fmt.Sprintf("s%03d", i%97), Code: sn.codes[i%len(sn.codes)],
			Severity: severities[rnd.IntN(3)], Status: "open", FirstSeen: base.Add(time.Duration(rnd.IntN(50)) * time.Minute),
			Amount: decimal.NewFromInt(int64(i)), Currency: []string{"KWD", "USD", ""}[i%3]}
	}
	for round := range 30 {
		var batch []casefile.Finding
		for range 1 + rnd.IntN(200) {
			batch = append(batch, finding(rnd.IntN(2000)))
		}
		// Each batch names a finding once, as a read of the latest versions does.
		slices.SortFunc(batch, func(a, b casefile.Finding) int {
			return cmp.Or(cmp.Compare(a.SessionID, b.SessionID), cmp.Compare(a.Code, b.Code))
		})
		batch = slices.CompactFunc(batch, func(a, b casefile.Finding) bool { return a.SessionID == b.SessionID && a.Code == b.Code })
		sn.apply(batch)
		s := sn.build()
		if len(s.rows) != len(sn.raw) {
			t.Fatalf("round %d: %d rows, %d findings", round, len(s.rows), len(sn.raw))
		}
		var want []*rawFinding
		for _, r := range sn.raw {
			want = append(want, r)
		}
		slices.SortFunc(want, before)
		for i, r := range want {
			if s.rows[i] != r.f {
				t.Fatalf("round %d: row %d is %s/%s, want %s/%s", round, i, s.rows[i].SessionID, s.rows[i].Code, r.f.SessionID, r.f.Code)
			}
			if s.meta[i] != r.m {
				t.Fatalf("round %d: row %d numbers %+v, want %+v", round, i, s.meta[i], r.m)
			}
		}
	}
}

// TestTally: the page's counts, days and stakes, as numbers, against the
// same sums done plainly; an amount too large for the units is added
// exactly all the same.
func TestTally(t *testing.T) {
	sn := &snapshots{raw: map[ledger.Key]*rawFinding{}, codes: codes(), codeIdx: map[string]int{},
		curIdx: map[string]int{}, gateways: map[string]bool{}}
	for i, c := range sn.codes {
		sn.codeIdx[c] = i
	}
	since := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	at := func(day int) time.Time { return since.AddDate(0, 0, day).Add(time.Hour) }
	resolvedOn := at(3)
	huge := decimal.RequireFromString("123456789012345678901.5")
	sn.apply([]casefile.Finding{
		{SessionID: "a", Code: "OVER_REFUND", Severity: "critical", Status: "open", FirstSeen: at(0), Amount: decimal.RequireFromString("10.500"), Currency: "KWD"},
		{SessionID: "b", Code: "OVER_REFUND", Severity: "critical", Status: "open", FirstSeen: at(1), Amount: huge, Currency: "KWD"},
		{SessionID: "c", Code: "OVER_REFUND", Severity: "critical", Status: "resolved", FirstSeen: at(1), ResolvedAt: &resolvedOn,
			Amount: decimal.RequireFromString("1"), Currency: "KWD"},
		{SessionID: "d", Code: "STALE_AUTHORIZATION", Severity: "info", Status: "open", FirstSeen: at(-40), Amount: decimal.RequireFromString("7"), Currency: "USD"},
		{SessionID: "e", Code: "PG_SIDE_OPERATION", Severity: "warning", Status: "open", FirstSeen: at(2), AcknowledgedBy: "ada", Currency: ""},
	})
	s := sn.build()
	openOnly := func(x *casefile.Finding, withStatus bool) bool { return !withStatus || statusOf(x) == "open" }
	l := tally(s, openOnly, since, 0)
	if l.total != 3 || len(l.rows) != 3 || l.rows[0].SessionID != "a" {
		t.Fatalf("open: %d rows of %d, first %v", len(l.rows), l.total, l.rows)
	}
	want := map[string][]uint64{"OVER_REFUND": {2, 0, 0}, "STALE_AUTHORIZATION": {0, 0, 1}}
	if len(l.cells) != len(want) {
		t.Fatalf("cells %+v", l.cells)
	}
	for _, c := range l.cells {
		if !slices.Equal(c.Counts, want[c.Code]) {
			t.Errorf("%s: %v, want %v", c.Code, c.Counts, want[c.Code])
		}
	}
	if l.days[0].Opened["critical"] != 1 || l.days[1].Opened["critical"] != 2 || l.days[3].Resolved["critical"] != 1 || l.days[2].Opened["warning"] != 1 {
		t.Errorf("days: %+v", l.days[:4])
	}
	stakes := map[string]string{}
	for _, st := range l.stakes {
		stakes[st.Code+"/"+st.Currency] = st.Amount.String() + " x" + fmt.Sprint(st.Count)
	}
	wantStakes := map[string]string{
		"OVER_REFUND/KWD":         huge.Add(decimal.RequireFromString("10.5")).String() + " x2", // the resolved one is not at stake
		"STALE_AUTHORIZATION/USD": "7 x1",
		"PG_SIDE_OPERATION/":      "0 x1",
	}
	if fmt.Sprint(stakes) != fmt.Sprint(wantStakes) {
		t.Errorf("stakes %v, want %v", stakes, wantStakes)
	}
	if l := tally(s, openOnly, since, 2); len(l.rows) != 1 || l.total != 3 {
		t.Errorf("from the third: %d rows of %d", len(l.rows), l.total)
	}
}
