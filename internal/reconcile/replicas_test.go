package reconcile

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/console"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// TestConsole_Replicas: two replicas of reconcile, each serving the
// console, on one NATS and one ClickHouse. A decision taken on one shows on
// the other at once, even when a merge removes a duplicate row in the same
// moment (the row count people's actions leave is unchanged: counting rows
// would miss it); finding versions a pass tells of but that become visible
// late, or out of order, are read when they do.
func TestConsole_Replicas(t *testing.T) {
	f := newConsoleFixture(t)
	cfg := f.m.Config
	cfg.Console.Listen = "127.0.0.1:0"
	other := MustOpenMain(t, cfg)
	a, b := f.client(t), newClient(t, other.ConsoleURL())
	_, csrf := a.signIn("ada", operatorPassword)
	if resp, _ := b.signIn("bob", viewerPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in on the other replica: %d", resp.StatusCode)
	}
	shows := func(c *client, session, what string) bool {
		_, page := c.do("GET", "/?status=all&q="+url.QueryEscape(session), nil, nil)
		return strings.Contains(page, what)
	}

	// A duplicate row of an action, as a retried insert leaves until a merge.
	pg := f.parent(t, ottusim.Kind(ledger.PGSideOperation))
	ctx := context.Background()
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second) // one row, stored twice
	for range 2 {
		if err := f.db.Conn().Exec(ctx, `INSERT INTO finding_actions (session_id, code, action, actor, at, note, evidence, action_id)
			SELECT ?, ?, 'note', 'cy', ?, 'a note stored twice', '', 'dup-1'`, pg.SessionID, string(ledger.PGSideOperation), at); err != nil {
			t.Fatal(err)
		}
	}
	before := chtest.Count(t, f.db, "SELECT count() FROM finding_actions")
	// Acknowledged on replica A; the duplicate merges away meanwhile.
	_, page := a.do("GET", "/payments/"+pg.SessionID, nil, nil)
	ev := evidenceOn(t, page, ledger.PGSideOperation)
	if resp, body := a.do("POST", "/actions", url.Values{"csrf": {csrf}, "session_id": {pg.SessionID}, "code": {string(ledger.PGSideOperation)},
		"action": {"acknowledge"}, "evidence": {ev}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("acknowledge: %d %s", resp.StatusCode, body)
	}
	if err := f.db.Conn().Exec(ctx, "OPTIMIZE TABLE finding_actions FINAL"); err != nil {
		t.Fatal(err)
	}
	if after := chtest.Count(t, f.db, "SELECT count() FROM finding_actions"); after != before {
		t.Fatalf("rows of finding_actions: %d before, %d after; the case wants them equal", before, after)
	}
	waitFor(t, "the acknowledgement on the other replica", 10*time.Second, func() bool {
		return shows(b, pg.SessionID, "acknowledged by ada")
	})

	// A pass tells of versions v and v+1; this ClickHouse shows v+1 first,
	// v only later (a replica that lags, parts replicated out of order).
	v := chtest.Count(t, f.db, "SELECT max(version) FROM findings_log") + 1000
	insert := func(version uint64, session string) {
		t.Helper()
		if err := f.db.Conn().Exec(ctx, `INSERT INTO findings_log (session_id, code, severity, status, first_seen, last_seen, detail, run_id,
			version, evidence, amount, currency_code, gateway)
			SELECT ?, ?, 'warning', 'open', now(), now(), 'late', 'late-run', ?, 'e', toDecimal64(1, 3), 'KWD', 'knet'`,
			session, string(ledger.SandboxInLive), version); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.m.changes().Publish(console.Change{From: v, To: v + 1}.Encode()); err != nil {
		t.Fatal(err)
	}
	insert(v+1, "late-second")
	waitFor(t, "the later version", 10*time.Second, func() bool { return shows(b, "late-second", "SANDBOX_IN_LIVE") })
	insert(v, "late-first")
	waitFor(t, "the earlier version, visible after the later one", 10*time.Second, func() bool {
		return shows(b, "late-first", "SANDBOX_IN_LIVE")
	})
	for _, c := range []*client{a, b} {
		if !shows(c, "late-first", "SANDBOX_IN_LIVE") || !shows(c, "late-second", "SANDBOX_IN_LIVE") {
			t.Fatalf("%s does not show both late versions", c.base)
		}
	}
}

// evidenceOn reads the evidence a payment's page carries for code.
func evidenceOn(t *testing.T, page string, code ledger.Code) string {
	t.Helper()
	i := strings.Index(page, `name="code" value="`+string(code)+`"><input type="hidden" name="evidence" value="`)
	if i < 0 {
		t.Fatalf("no form for %s on the page", code)
	}
	rest := page[i+len(`name="code" value="`+string(code)+`"><input type="hidden" name="evidence" value="`):]
	return rest[:strings.Index(rest, `"`)]
}
