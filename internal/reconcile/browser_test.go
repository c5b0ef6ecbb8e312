package reconcile

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
)

// chromium starts Debian's chromium, headless, and returns a tab. It fails
// under CI when chromium is missing (scripts/chromium.sh installs it), and
// skips otherwise.
func chromium(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path, _ = exec.LookPath("chromium")
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not found: run scripts/chromium.sh (apt-get install chromium)")
		}
		t.Skip("chromium not found: scripts/chromium.sh installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser: no timeout on this first call
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshots is where the browser test writes its pictures:
// CONSOLE_SCREENSHOTS (make test: .tmp/screenshots; make screenshots:
// docs/screenshots), else a temporary directory.
func screenshots(t *testing.T) string {
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConsole_Browser works the console as a person would, in Debian's
// chromium: sign in, filter, open a payment, acknowledge, resolve with a
// note, export, acknowledge a selection, make and end a mute rule, sign
// out; a viewer sees no actions and masked customer
// data; a forged cross-site POST fails; nothing answers without a session.
// It writes a screenshot of each page.
func TestConsole_Browser(t *testing.T) {
	browserCtx := chromium(t)
	f := newConsoleFixture(t)
	shots := screenshots(t)
	downloads := t.TempDir()
	ctx, cancel := context.WithTimeout(browserCtx, 3*time.Minute)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	count := func(what, expr string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	location := func() string { return get("location", chromedp.Location()) }
	// submit runs steps that end in a click that loads a page, and waits
	// for that page.
	submit := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		resp, err := chromedp.RunResponse(ctx, steps...)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if resp.Status != http.StatusOK {
			t.Fatalf("%s: answered %d", what, resp.Status)
		}
	}

	// Nothing answers without a session.
	for _, path := range []string{"/", "/payments/x", "/findings.csv"} {
		do("open "+path+" signed out", chromedp.Navigate(f.url+path), chromedp.WaitVisible(chromedp.ID("signin")))
		if loc := location(); loc != f.url+"/signin" {
			t.Fatalf("%s signed out: at %s, want the sign-in page", path, loc)
		}
	}
	shot("signin")

	signIn := func(name, password string) {
		t.Helper()
		do("open the sign-in page", chromedp.Navigate(f.url+"/signin"), chromedp.WaitVisible(chromedp.ID("name")))
		submit("sign in as "+name, chromedp.SendKeys(chromedp.ID("name"), name), chromedp.SendKeys(chromedp.ID("password"), password),
			chromedp.Click(chromedp.ID("signin")))
		if loc := location(); loc != f.url+"/" {
			t.Fatalf("signed in as %s: at %s", name, loc)
		}
	}
	signIn("ada", operatorPassword)
	if text := get("findings heading", chromedp.Text(chromedp.ID("counts-h"))); !strings.Contains(text, "open findings") {
		t.Fatalf("findings heading %q", text)
	}
	// The coverage line is read in the background: wait for the fixture's.
	waitFor(t, "the coverage of the fixture's orders", 15*time.Second, func() bool {
		do("open the findings", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(chromedp.ID("coverage")))
		return strings.Contains(get("coverage", chromedp.Text(chromedp.ID("coverage"))), "accounted for")
	})
	shot("findings")

	// Filter: critical only.
	submit("filter", chromedp.SetValue(chromedp.ID("f-severity"), "critical"), chromedp.Click(chromedp.ID("apply")))
	other := count("rows of another severity", `[...document.querySelectorAll("table.findings .sev")].filter(e => e.textContent !== "critical").length`)
	rows := count("rows", `document.querySelectorAll("table.findings tbody tr").length`)
	if loc := location(); !strings.Contains(loc, "severity=critical") || other != 0 || rows == 0 {
		t.Fatalf("filtered to critical: at %s, %d rows, %d of another severity", loc, rows, other)
	}
	shot("findings-critical")

	// Open a payment; acknowledge its first finding, then resolve it with a note.
	submit("open a payment", chromedp.Click(chromedp.CSS("a.payment-link")))
	code, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("article.finding").id`))
	if err != nil {
		t.Fatal(err)
	}
	shot("payment")
	submit("acknowledge", chromedp.Click(chromedp.ID("ack-"+code)))
	if text := get("finding", chromedp.Text(chromedp.ID(code))); !strings.Contains(text, "by ada") {
		t.Fatalf("after acknowledging, the finding reads %q", text)
	}
	submit("resolve with a note", chromedp.SendKeys(chromedp.ID("resolve-note-"+code), "checked with the bank: duplicate webhook, no money moved"),
		chromedp.Click(chromedp.ID("resolve-"+code)))
	if text := get("finding", chromedp.Text(chromedp.ID(code))); !strings.Contains(text, "resolved") || !strings.Contains(text, "no money moved") ||
		!strings.Contains(text, "acknowledge") {
		t.Fatalf("after resolving, the finding reads %q", text)
	}
	shot("payment-resolved")
	if got := chtest.Count(t, f.db, "SELECT count() FROM finding_actions WHERE actor = 'ada' AND code = ?", code); got != 2 {
		t.Fatalf("finding_actions: %d actions by ada on %s, want 2", got, code)
	}

	// A raw body, as the operator sees it.
	submit("raw body", chromedp.Click(chromedp.CSS("table.timeline a")))
	shot("delivery")

	// Export the current filter.
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: downloads, EventsEnabled: new(true)}); err != nil {
		t.Fatal(err)
	}
	do("export", chromedp.Navigate(f.url+"/?status=all"), chromedp.WaitVisible(chromedp.ID("export")), chromedp.Click(chromedp.ID("export")))
	var exported [][]string
	waitFor(t, "the CSV downloaded", 30*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(downloads, "*"))
		for _, name := range files {
			if strings.HasSuffix(name, ".crdownload") {
				continue
			}
			b, err := os.ReadFile(name)
			if err != nil {
				continue
			}
			if rows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll(); err == nil && len(rows) > 1 {
				exported = rows
				return true
			}
		}
		return false
	})
	if want := chtest.Count(t, f.db, "SELECT count() FROM findings"); uint64(len(exported)-1) != want {
		t.Fatalf("exported %d findings, want %d", len(exported)-1, want)
	}

	// Act on a selection: every open warning, after seeing how many.
	do("open warnings", chromedp.Navigate(f.url+"/?severity=warning"), chromedp.WaitVisible(chromedp.ID("select")))
	submit("select them", chromedp.Click(chromedp.ID("select")))
	picked := count("picked", `document.querySelectorAll('input[name="f"]').length`)
	if said := get("count", chromedp.Text(chromedp.ID("selection-count"))); picked == 0 || !strings.HasPrefix(said, fmt.Sprint(picked)+" open findings") {
		t.Fatalf("the selection page says %q and carries %d findings", said, picked)
	}
	shot("selection")
	acks := chtest.Count(t, f.db, "SELECT count() FROM finding_actions WHERE action = 'acknowledge'")
	submit("acknowledge the selection", chromedp.Click(chromedp.ID("act-selection")))
	if got := chtest.Count(t, f.db, "SELECT count() FROM finding_actions WHERE action = 'acknowledge'"); got != acks+uint64(picked) {
		t.Fatalf("acknowledgements: %d, want %d + %d", got, acks, picked)
	}
	if text := get("heading", chromedp.Text(chromedp.ID("counts-h"))); !strings.HasPrefix(text, "0 open findings") {
		t.Fatalf("after acknowledging the selection, the list says %q", text)
	}

	// A mute rule: made, listed, ended early; each audited.
	do("mute rules", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(chromedp.ID("mutes-link")))
	submit("open mute rules", chromedp.Click(chromedp.ID("mutes-link")))
	submit("make a rule", chromedp.SetValue(chromedp.ID("m-code"), code), chromedp.SendKeys(chromedp.ID("m-note"), "bank maintenance window"),
		chromedp.Click(chromedp.ID("make-rule")))
	if text := get("rules in force", chromedp.Text(chromedp.ID("rules-active"))); !strings.Contains(text, code) || !strings.Contains(text, "bank maintenance window") {
		t.Fatalf("rules in force: %q", text)
	}
	shot("mute-rules")
	submit("end the rule", chromedp.Click(chromedp.CSS(`#rules-active button`)))
	if text := get("ended rules", chromedp.Text(chromedp.ID("rules-ended"))); !strings.Contains(text, "ada") {
		t.Fatalf("ended rules: %q", text)
	}
	if got := chtest.Count(t, f.db, "SELECT count() FROM finding_actions WHERE action IN ('mute_rule', 'end_mute_rule') AND actor = 'ada'"); got != 2 {
		t.Fatalf("rule actions audited: %d, want 2", got)
	}

	// A forged POST from another site, while the operator is signed in.
	before := chtest.Count(t, f.db, "SELECT count() FROM finding_actions")
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/actions">
<input name="session_id" value="x"><input name="code" value="%s"><input name="action" value="acknowledge"></form>
<script>document.getElementById("f").submit()</script>`, f.url, code)
	}))
	defer evil.Close()
	do("forged POST", chromedp.Navigate(strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)), chromedp.WaitVisible(chromedp.ID("err-h")))
	if text := get("forged POST's answer", chromedp.Text(chromedp.ID("err-h"))); text != "Forbidden" ||
		chtest.Count(t, f.db, "SELECT count() FROM finding_actions") != before {
		t.Fatalf("forged POST: page %q, actions %d before", text, before)
	}

	// The findings page on a phone.
	do("phone", chromedp.EmulateViewport(390, 844), chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(chromedp.ID("apply")))
	shot("findings-phone")
	do("laptop", chromedp.EmulateViewport(1280, 900))

	// Sign out: the session is over.
	do("findings", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(chromedp.ID("signout")))
	submit("sign out", chromedp.Click(chromedp.ID("signout")))
	do("findings signed out", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(chromedp.ID("signin")))
	if loc := location(); loc != f.url+"/signin" {
		t.Fatalf("after signing out, / is %s", loc)
	}

	// A viewer: no actions, customer data masked.
	signIn("bob", viewerPassword)
	submit("viewer's payment", chromedp.Click(chromedp.CSS("a.payment-link")))
	if n := count("action forms", `document.querySelectorAll('form[action="/actions"]').length`); n != 0 {
		t.Fatalf("a viewer is shown %d action forms", n)
	}
	shot("payment-viewer")
	submit("viewer's raw body", chromedp.Click(chromedp.CSS("table.timeline a")))
	if text := get("raw body", chromedp.Text(chromedp.CSS("pre.raw"))); strings.Contains(text, "@example.com") || strings.Contains(text, "+9655") {
		t.Fatalf("a viewer sees customer data: %s", text)
	}
	shot("delivery-viewer")
	t.Logf("screenshots in %s", shots)
}
