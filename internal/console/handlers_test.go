package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

func open(id, code, gateway, evidence string) casefile.Finding {
	return casefile.Finding{SessionID: id, Code: code, Severity: "warning", Status: ledger.StatusOpen, Evidence: evidence,
		FirstSeen: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Amount: decimal.RequireFromString("5.000"), Currency: "KWD", Gateway: gateway}
}

var picks = regexp.MustCompile(`name="f" value="([^"]*)"`)

// TestSelection: an operator sees how many findings the filter selects and
// acknowledges exactly those, each with its own action and the evidence it
// had; a finding raised after the page was made is not taken; a viewer
// sees the page and cannot act.
func TestSelection(t *testing.T) {
	r := newRig(t)
	var fs []casefile.Finding
	for i := range 30 {
		gw := "knet"
		if i%3 == 0 {
			gw = "benefit"
		}
		fs = append(fs, open(fmt.Sprintf("s%02d", i), string(ledger.SandboxInLive), gw, fmt.Sprintf("e%d", i)))
	}
	from, to := r.store.write(fs...)
	r.c.Changed(Change{From: from, To: to})
	page := r.do(Operator, "GET", "/select?gateway=knet", nil)
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), "<strong>20</strong> open findings match") {
		t.Fatalf("select page: %d\n%s", page.Code, page.Body.String())
	}
	form := url.Values{"action": {"acknowledge"}, "back": {"?gateway=knet"}}
	for _, m := range picks.FindAllStringSubmatch(page.Body.String(), -1) {
		form.Add("f", m[1])
	}
	if len(form["f"]) != 20 {
		t.Fatalf("the form carries %d findings, want 20", len(form["f"]))
	}
	// Raised meanwhile: the filter selects it now, the selection does not.
	from, to = r.store.write(open("s99", string(ledger.SandboxInLive), "knet", "e99"))
	r.c.Changed(Change{From: from, To: to})

	if got := r.do(Viewer, "POST", "/actions/selection", form); got.Code != http.StatusForbidden {
		t.Fatalf("a viewer acted: %d", got.Code)
	}
	if got := r.do(Operator, "POST", "/actions/selection", form); got.Code != http.StatusSeeOther || got.Header().Get("Location") != "/?gateway=knet" {
		t.Fatalf("act: %d %s", got.Code, got.Header().Get("Location"))
	}
	if len(r.store.actions) != 20 {
		t.Fatalf("%d actions recorded, want 20", len(r.store.actions))
	}
	for _, a := range r.store.actions {
		if a.SessionID == "s99" || a.Action != casefile.ActionAcknowledge || a.Actor != "ada" || a.Evidence != "e"+strings.TrimLeft(a.SessionID[1:], "0") && a.SessionID != "s00" {
			t.Fatalf("action %+v", a)
		}
	}
	// The list shows them acknowledged at once on this replica: the open
	// ones left are s99 and the ten on benefit.
	list := r.do(Operator, "GET", "/?gateway=knet", nil).Body.String()
	if !strings.Contains(list, ">1 open findings") {
		t.Fatalf("after the action, the list says:\n%s", list)
	}
	// A resolution needs a note; a selection of nothing is refused.
	bad := url.Values{"action": {"resolve"}, "f": form["f"][:1]}
	if got := r.do(Operator, "POST", "/actions/selection", bad); got.Code != http.StatusBadRequest {
		t.Fatalf("a resolution without a note: %d", got.Code)
	}
	if got := r.do(Operator, "POST", "/actions/selection", url.Values{"action": {"acknowledge"}}); got.Code != http.StatusBadRequest {
		t.Fatalf("an empty selection: %d", got.Code)
	}
	// A forged finding: nothing of the selection is recorded.
	forged := url.Values{"action": {"acknowledge"}, "f": {form["f"][0], string(ledger.SandboxInLive) + " e1 nobody"}}
	if got := r.do(Operator, "POST", "/actions/selection", forged); got.Code != http.StatusBadRequest || len(r.store.actions) != 20 {
		t.Fatalf("a forged finding: %d, %d actions", got.Code, len(r.store.actions))
	}
}

// TestMuteRulePages: a rule made on the page mutes the findings it
// matches (and shows so), lists in force, ends early, and is then listed
// as ended; a rule matching everything is refused.
func TestMuteRulePages(t *testing.T) {
	r := newRig(t)
	from, to := r.store.write(open("s1", string(ledger.SandboxInLive), "knet", "e1"), open("s2", string(ledger.SandboxInLive), "benefit", "e2"))
	r.c.Changed(Change{From: from, To: to})
	if got := r.do(Operator, "POST", "/mutes", url.Values{"until": {"2026-12-20"}, "note": {"all"}}); got.Code != http.StatusBadRequest {
		t.Fatalf("a rule matching everything: %d", got.Code)
	}
	if got := r.do(Viewer, "POST", "/mutes", url.Values{"gateway": {"knet"}, "until": {"2026-12-20"}, "note": {"x"}}); got.Code != http.StatusForbidden {
		t.Fatalf("a viewer made a rule: %d", got.Code)
	}
	if got := r.do(Operator, "POST", "/mutes", url.Values{"gateway": {"knet"}, "until": {"2026-12-20"}, "note": {"knet outage"}}); got.Code != http.StatusSeeOther {
		t.Fatalf("make a rule: %d %s", got.Code, got.Body.String())
	}
	list := r.do(Viewer, "GET", "/?status=all", nil).Body.String()
	if strings.Count(list, "muted until 2026-12-21") != 1 {
		t.Fatalf("the rule's finding does not show it muted (or another does):\n%s", list)
	}
	mutes := r.do(Viewer, "GET", "/mutes", nil).Body.String()
	if !strings.Contains(mutes, "knet outage") || strings.Contains(mutes, "End now") {
		t.Fatalf("mutes page for a viewer:\n%s", mutes)
	}
	if got := r.do(Operator, "POST", "/mutes/r0/end", url.Values{"note": {"fixed"}}); got.Code != http.StatusSeeOther {
		t.Fatalf("end the rule: %d %s", got.Code, got.Body.String())
	}
	if got := r.do(Operator, "POST", "/mutes/r0/end", url.Values{}); got.Code != http.StatusNotFound {
		t.Fatalf("end it twice: %d", got.Code)
	}
	if list := r.do(Viewer, "GET", "/?status=all", nil).Body.String(); strings.Contains(list, "muted until") {
		t.Fatalf("an ended rule still mutes:\n%s", list)
	}
	if mutes := r.do(Viewer, "GET", "/mutes", nil).Body.String(); !strings.Contains(mutes, "No mute rule is in force") || !strings.Contains(mutes, "ada, 2026-12-07") {
		t.Fatalf("mutes page after the end:\n%s", mutes)
	}
}

// TestChangeFeed: what a replica is told it reads whatever order its
// server shows it in. A version the server does not show yet is read again
// until it does, and an older version read after a newer one changes
// nothing; an action heard of shows even while the server's read of
// decisions does not have it, and after a full read that lacks it.
func TestChangeFeed(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	code := string(ledger.SandboxInLive)
	from, _ := r.store.write(open("s1", code, "knet", "e1"))
	r.c.Changed(Change{From: from, To: from})
	if _, err := r.c.findings(ctx); err != nil {
		t.Fatal(err)
	}
	// Versions 2 (s1 resolved) and 3 (s2) written; this server shows 3 only.
	resolved := open("s1", code, "knet", "e1")
	resolved.Status, resolved.ResolvedAt = ledger.StatusResolved, new(time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC))
	from, to := r.store.write(resolved, open("s2", code, "knet", "e2"))
	r.store.hidden[from] = true
	r.c.Changed(Change{From: from, To: to})
	snap, err := r.c.findings(ctx)
	if err != nil || len(snap.rows) != 2 || statusOf(snap.rows[0]) != "open" && statusOf(snap.rows[1]) != "open" {
		t.Fatalf("before version 2 is visible: %v", err)
	}
	r.store.hidden[from] = false
	r.c.forget() // the next tick reads the range again
	snap, _ = r.c.findings(ctx)
	for _, f := range snap.rows {
		if f.SessionID == "s1" && f.Status != ledger.StatusResolved {
			t.Fatalf("version 2, visible late, was never read: %+v", f)
		}
	}
	// An older version told again (a replayed message) does not go back.
	r.c.Changed(Change{From: 1, To: 1})
	snap, _ = r.c.findings(ctx)
	for _, f := range snap.rows {
		if f.SessionID == "s1" && f.Status != ledger.StatusResolved {
			t.Fatalf("an older version replaced a newer one: %+v", f)
		}
	}
	// ClickHouse does not answer when a range is read: the page says so,
	// and the next page, once it answers, reads the range.
	from, to = r.store.write(open("s3", code, "knet", "e3"))
	r.c.Changed(Change{From: from, To: to})
	r.store.down = true
	if _, err := r.c.findings(ctx); err == nil {
		t.Fatal("read a range while ClickHouse was down")
	}
	r.store.down = false
	if snap, err := r.c.findings(ctx); err != nil || len(snap.rows) != 3 {
		t.Fatalf("after ClickHouse is back: %v", err)
	}
	// Another replica acknowledged s2; this server's decisions lag.
	ack := casefile.Action{SessionID: "s2", Code: code, Action: casefile.ActionAcknowledge, Actor: "bo", Evidence: "e2", At: r.c.now(), ID: "x1"}
	r.c.Changed(Change{Actions: []casefile.Action{ack}})
	for _, full := range []bool{false, true} {
		snap, err := r.c.update(ctx, full)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range snap.rows {
			if f.SessionID == "s2" && f.AcknowledgedBy != "bo" {
				t.Fatalf("full read %v: the acknowledgement heard of is hidden: %+v", full, f)
			}
		}
	}
}

// TestExportOutage: with ClickHouse down, the export is an error, never an
// empty file that reads as "no findings".
func TestExportOutage(t *testing.T) {
	r := newRig(t)
	r.store.down = true
	if got := r.do(Viewer, "GET", "/findings.csv", nil); got.Code < 500 {
		t.Fatalf("export during an outage: %d %q", got.Code, got.Body.String())
	}
}

// TestTell: a selection's actions reach the other replicas in messages of
// 500, each well under NATS's 1 MB payload, and all of them arrive.
func TestTell(t *testing.T) {
	r := newRig(t)
	feed := &memFeed{}
	r.c.Feed = feed
	var as []casefile.Action
	for i := range 1201 {
		as = append(as, casefile.Action{SessionID: fmt.Sprintf("%040d", i), Code: string(ledger.ParentTotalsMismatch), Action: casefile.ActionResolve,
			Actor: "ada", Note: strings.Repeat("n", 200), Evidence: "0123456789abcdef", ID: fmt.Sprintf("%024d", i)})
	}
	r.c.tell(Change{Actions: as})
	got := 0
	for _, m := range feed.sent {
		var ch Change
		if err := json.Unmarshal(m, &ch); err != nil || len(m) > 1<<20 || len(ch.Actions) > 500 {
			t.Fatalf("a message of %d bytes, %d actions: %v", len(m), len(ch.Actions), err)
		}
		got += len(ch.Actions)
	}
	if len(feed.sent) != 3 || got != len(as) {
		t.Fatalf("%d messages carrying %d actions, want 3 carrying %d", len(feed.sent), got, len(as))
	}
}
