package console

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
)

// TestSnapshotOrder: however findings arrive (new ones, newer versions in
// place, versions that move a finding: reopened later, another severity),
// the order kept between builds is the order a full sort gives.
func TestSnapshotOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	sn := &snapshots{raw: map[clickhouse.FindingKey]*rawFinding{}, codes: codes(), codeIdx: map[string]int{},
		curIdx: map[string]int{}, gateways: map[string]bool{}}
	for i, c := range sn.codes {
		sn.codeIdx[c] = i
	}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	finding := func(i int) clickhouse.ConsoleFinding {
		return clickhouse.ConsoleFinding{SessionID: fmt.Sprintf("s%03d", i%97), Code: sn.codes[i%len(sn.codes)],
			Severity: severities[rnd.IntN(3)], Status: "open", FirstSeen: base.Add(time.Duration(rnd.IntN(50)) * time.Minute),
			Amount: decimal.NewFromInt(int64(i)), Currency: []string{"KWD", "USD", ""}[i%3]}
	}
	for round := range 30 {
		var batch []clickhouse.ConsoleFinding
		for range 1 + rnd.IntN(200) {
			batch = append(batch, finding(rnd.IntN(2000)))
		}
		// Each batch names a finding once, as a read of the latest versions does.
		slices.SortFunc(batch, func(a, b clickhouse.ConsoleFinding) int {
			return cmp.Or(cmp.Compare(a.SessionID, b.SessionID), cmp.Compare(a.Code, b.Code))
		})
		batch = slices.CompactFunc(batch, func(a, b clickhouse.ConsoleFinding) bool { return a.SessionID == b.SessionID && a.Code == b.Code })
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
