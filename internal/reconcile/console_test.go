package reconcile

import (
	"context"
	"crypto/tls"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/console"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// consoleFixture is reconcile serving the console over a store that holds
// a corpus with every finding code, after a first pass.
type consoleFixture struct {
	m       *Main
	db      *clickhouse.DB
	url     string // the console's base URL
	sink    *alertSink
	pub     *nats.Publisher
	parents []ottusim.Parent
	key     []byte
}

const (
	operatorPassword = "operator-password-1"
	viewerPassword   = "viewer-password-12"
)

func newConsoleFixture(t *testing.T) *consoleFixture {
	t.Helper()
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	sink, alertsURL := alertReceiver(t, "alert-key")
	users := writeUsers(t, "ada", "operator", operatorPassword, "bob", "viewer", viewerPassword, "cy", "viewer", viewerPassword)
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.AlertURL, cfg.AlertHMACKey = alertsURL, "alert-key"
	cfg.Console.Listen, cfg.Console.UsersFile, cfg.Console.URL = "127.0.0.1:0", users, "http://recon.example.com"
	m := MustOpenMain(t, cfg)
	f := &consoleFixture{m: m, db: db, url: m.ConsoleURL(), sink: sink, pub: publisher(t, ns.ClientURL()), key: []byte("k")}

	gen := &ottusim.Generator{Now: time.Now().UTC(), Grace: cfg.Grace}
	for _, k := range append(append([]ottusim.Kind(nil), ottusim.AnomalyKinds...), ottusim.CleanKinds...) {
		f.parents = append(f.parents, gen.Parent(k))
	}
	distinct := map[string]bool{}
	var orders []ottusim.Order
	for _, p := range f.parents {
		if p.Order != nil {
			orders = append(orders, *p.Order)
		}
		for _, w := range p.Webhooks {
			body := ottusim.Sign(w.Object, events.SchemeA, f.key)
			publishAt(t, f.pub, body, w.At)
			distinct[string(body)] = true
		}
	}
	insertOrders(t, db, orders)
	waitFor(t, "every webhook stored", 60*time.Second, func() bool {
		return chtest.Count(t, db, "SELECT count() FROM webhooks_raw")+chtest.Count(t, db, "SELECT count() FROM unreadable_webhooks") == uint64(len(distinct))
	})
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeUsers writes a console users file of name, role, password triples.
func writeUsers(t *testing.T, triples ...string) string {
	t.Helper()
	users := filepath.Join(t.TempDir(), "console-users")
	var lines []string
	for i := 0; i+2 < len(triples); i += 3 {
		hash, err := bcrypt.GenerateFromPassword([]byte(triples[i+2]), bcrypt.MinCost) // the file takes any bcrypt cost; the test's is low
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, triples[i]+" "+triples[i+1]+" "+string(hash))
	}
	if err := os.WriteFile(users, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return users
}

// parent returns the corpus's parent of kind.
func (f *consoleFixture) parent(t *testing.T, kind ottusim.Kind) ottusim.Parent {
	t.Helper()
	for _, p := range f.parents {
		if p.Kind == kind {
			return p
		}
	}
	t.Fatalf("no parent of kind %s", kind)
	return ottusim.Parent{}
}

// client is a browser-like client: cookies, no redirects followed.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func (f *consoleFixture) client(t *testing.T) *client { return newClient(t, f.url) }

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, form url.Values, header map[string]string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

var hiddenToken = regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`)

// signIn signs in as name and returns the session's form token.
func (c *client) signIn(name, password string) (*http.Response, string) {
	c.t.Helper()
	_, page := c.do("GET", "/signin", nil, nil)
	m := hiddenToken.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("sign-in page without a form token: %s", page)
	}
	resp, _ := c.do("POST", "/signin", url.Values{"csrf": {m[1]}, "name": {name}, "password": {password}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		return resp, ""
	}
	_, home := c.do("GET", "/", nil, nil)
	m = hiddenToken.FindStringSubmatch(home)
	if m == nil {
		c.t.Fatalf("findings page without a form token")
	}
	return resp, m[1]
}

// TestConsole_Access: nothing answers without a session; sign-in sets a
// session cookie that scripts cannot read and other sites cannot send;
// wrong passwords are throttled; a state-changing request needs the
// session's form token and the console's own origin; a viewer changes
// nothing; signing out ends the session.
func TestConsole_Access(t *testing.T) {
	f := newConsoleFixture(t)
	over := f.parent(t, ottusim.Kind(ledger.OverRefund))
	anon := f.client(t)
	for _, path := range []string{"/", "/payments/" + over.SessionID, "/findings.csv", "/payments/" + over.SessionID + "/deliveries/x", "/nope"} {
		if resp, body := anon.do("GET", path, nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" ||
			strings.Contains(body, over.SessionID) {
			t.Errorf("GET %s without a session: %d %s", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp, _ := anon.do("POST", "/actions", url.Values{"session_id": {over.SessionID}, "code": {string(ledger.OverRefund)}, "action": {"acknowledge"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /actions without a session: %d", resp.StatusCode)
	}
	resp, _ := anon.do("GET", "/signin", nil, nil)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q", csp)
	}

	// Wrong passwords, then the right one: throttled after five.
	guess := f.client(t)
	for i := range 5 {
		if resp, _ := guess.signIn("cy", "wrong-password-"+fmt.Sprint(i)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, resp.StatusCode)
		}
	}
	if resp, _ := guess.signIn("cy", "wrong-password-x"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sixth wrong password: %d", resp.StatusCode)
	}
	if resp, _ := guess.signIn("cy", viewerPassword); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("right password while throttled: %d, want 429 with Retry-After", resp.StatusCode)
	}

	op := f.client(t)
	resp, csrf := op.signIn("ada", operatorPassword)
	if resp.StatusCode != http.StatusSeeOther || csrf == "" {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "recon_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict", session)
	}
	if resp, body := op.do("GET", "/", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, string(ledger.OverRefund)) {
		t.Fatalf("findings page: %d", resp.StatusCode)
	} else if !strings.Contains(body, `id="coverage"`) || !strings.Contains(body, "Coverage since") {
		t.Fatal("the findings page does not show the coverage of the sweep's watch")
	}
	waitFor(t, "the coverage of the fixture's orders and payments on the findings page", 15*time.Second, func() bool {
		_, body := op.do("GET", "/", nil, nil)
		return strings.Contains(body, "merchant orders and payments accounted for")
	})

	act := url.Values{"session_id": {over.SessionID}, "code": {string(ledger.OverRefund)}, "action": {"acknowledge"}}
	actions := func() uint64 { return chtest.Count(t, f.db, "SELECT count() FROM finding_actions") }
	// Forged: no form token; another origin; another site's fetch.
	if resp, _ := op.do("POST", "/actions", act, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST without the form token: %d", resp.StatusCode)
	}
	withToken := url.Values{"csrf": {csrf}}
	for k, v := range act {
		withToken[k] = v
	}
	if resp, _ := op.do("POST", "/actions", withToken, map[string]string{"Origin": "https://evil.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST from another origin: %d", resp.StatusCode)
	}
	if resp, _ := op.do("POST", "/actions", withToken, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST from another site: %d", resp.StatusCode)
	}
	if n := actions(); n != 0 {
		t.Fatalf("%d actions recorded by forged requests", n)
	}

	// A viewer reads, masked, and changes nothing.
	viewer := f.client(t)
	_, vcsrf := viewer.signIn("bob", viewerPassword)
	vact := url.Values{"csrf": {vcsrf}}
	for k, v := range act {
		vact[k] = v
	}
	if resp, _ := viewer.do("POST", "/actions", vact, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer's action: %d", resp.StatusCode)
	}
	if n := actions(); n != 0 {
		t.Fatalf("a viewer recorded %d actions", n)
	}
	_, page := viewer.do("GET", "/payments/"+over.SessionID, nil, nil)
	if strings.Contains(page, `action="/actions"`) {
		t.Error("a viewer is shown action forms")
	}
	delivery := regexp.MustCompile(`/deliveries/([^"]+)"`).FindStringSubmatch(page)
	if delivery == nil {
		t.Fatalf("payment page lists no delivery")
	}
	_, raw := viewer.do("GET", "/payments/"+over.SessionID+"/deliveries/"+delivery[1], nil, nil)
	_, opRaw := op.do("GET", "/payments/"+over.SessionID+"/deliveries/"+delivery[1], nil, nil)
	email := "buyer" + over.SessionID[:4] + "@example.com"
	if strings.Contains(raw, email) || strings.Contains(raw, "+96550000001") || !strings.Contains(raw, "•••") {
		t.Errorf("viewer sees the customer's email or phone")
	}
	if !strings.Contains(opRaw, email) {
		t.Errorf("operator does not see the raw body whole")
	}
	// The exact bytes, for operators only.
	var stored string
	if err := f.db.Conn().QueryRow(context.Background(), "SELECT body FROM webhooks_raw WHERE delivery_id = ?", delivery[1]).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if resp, body := op.do("GET", "/payments/"+over.SessionID+"/deliveries/"+delivery[1]+"/body", nil, nil); resp.StatusCode != http.StatusOK || body != stored {
		t.Errorf("operator's download: %d, the stored bytes: %v", resp.StatusCode, body == stored)
	}
	if resp, _ := viewer.do("GET", "/payments/"+over.SessionID+"/deliveries/"+delivery[1]+"/body", nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer's download: %d, want 403", resp.StatusCode)
	}

	// The operator's own, well-formed request is recorded.
	if resp, _ := op.do("POST", "/actions", withToken, map[string]string{"Origin": f.url}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("operator's acknowledge: %d", resp.StatusCode)
	}
	if n := chtest.Count(t, f.db, "SELECT count() FROM findings WHERE session_id = ? AND code = ? AND acknowledged_by = 'ada'", over.SessionID, string(ledger.OverRefund)); n != 1 {
		t.Fatalf("findings view: acknowledged_by not ada")
	}

	// Signing out ends the session, for this browser and any copy of its cookie.
	if resp, _ := op.do("POST", "/signout", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	stolen := f.client(t)
	u, _ := url.Parse(f.url)
	stolen.http.Jar.SetCookies(u, []*http.Cookie{{Name: "recon_session", Value: session.Value}})
	if resp, _ := stolen.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the session still answers after signing out: %d", resp.StatusCode)
	}
}

// TestConsole_Actions: what operators do is kept in finding_actions, shown
// on the payment's page and in the findings view, and honoured by passes:
// an acknowledged finding is not alerted again while its evidence is
// unchanged; a finding resolved by hand stays resolved until new evidence
// arrives and the rule still fires, then reopens and is alerted; a muted one
// is not alerted. The list filters, counts and exports what it shows.
func TestConsole_Actions(t *testing.T) {
	f := newConsoleFixture(t)
	op := f.client(t)
	_, csrf := op.signIn("ada", operatorPassword)
	act := func(p ottusim.Parent, code ledger.Code, action string, extra url.Values) {
		t.Helper()
		_, page := op.do("GET", "/payments/"+p.SessionID, nil, nil)
		ev := regexp.MustCompile(`name="code" value="` + string(code) + `"><input type="hidden" name="evidence" value="([0-9a-f]*)"`).FindStringSubmatch(page)
		if ev == nil {
			t.Fatalf("%s: no form for %s on the payment's page", p.SessionID, code)
		}
		form := url.Values{"csrf": {csrf}, "session_id": {p.SessionID}, "code": {string(code)}, "action": {action}, "evidence": {ev[1]}}
		for k, v := range extra {
			form[k] = v
		}
		if resp, body := op.do("POST", "/actions", form, nil); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s %s: %d %s", action, code, resp.StatusCode, body)
		}
	}
	refund := f.parent(t, ottusim.Kind(ledger.OverRefund))
	pg := f.parent(t, ottusim.Kind(ledger.PGSideOperation))
	orphan := f.parent(t, ottusim.Kind(ledger.OrphanOperation))

	// Resolving needs a note.
	_, page := op.do("GET", "/payments/"+refund.SessionID, nil, nil)
	ev := regexp.MustCompile(`name="evidence" value="([0-9a-f]*)"`).FindStringSubmatch(page)
	if resp, _ := op.do("POST", "/actions", url.Values{"csrf": {csrf}, "session_id": {refund.SessionID}, "code": {string(ledger.OverRefund)},
		"action": {"resolve"}, "evidence": {ev[1]}}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("resolve without a note: %d", resp.StatusCode)
	}
	act(refund, ledger.OverRefund, "resolve", url.Values{"note": {"refunded twice on purpose: goodwill, ticket 4411"}})
	act(pg, ledger.PGSideOperation, "acknowledge", nil)
	act(orphan, ledger.OrphanOperation, "mute", url.Values{"until": {time.Now().UTC().AddDate(0, 0, 7).Format("2006-01-02")}})
	act(orphan, ledger.OrphanOperation, "note", url.Values{"note": {"asked the bank"}})

	if n := chtest.Count(t, f.db, "SELECT count() FROM finding_actions WHERE actor = 'ada'"); n != 4 {
		t.Fatalf("finding_actions: %d rows by ada, want 4", n)
	}
	if n := chtest.Count(t, f.db, "SELECT count() FROM findings WHERE session_id = ? AND status = 'resolved' AND resolved_by = 'ada'", refund.SessionID); n != 1 {
		t.Fatal("findings view: OVER_REFUND not resolved by ada")
	}
	if n := chtest.Count(t, f.db, "SELECT count() FROM findings WHERE session_id = ? AND muted_until > now()", orphan.SessionID); n != 1 {
		t.Fatal("findings view: ORPHAN_OPERATION not muted")
	}
	_, page = op.do("GET", "/payments/"+refund.SessionID, nil, nil)
	if !strings.Contains(page, "goodwill, ticket 4411") || !strings.Contains(page, "by ada") {
		t.Fatal("the payment's page does not show the resolution and its note")
	}

	// A pass with nothing new: the resolution holds, nothing is alerted.
	alertsBefore, _ := f.sink.snapshot()
	if _, err := f.m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := chtest.Count(t, f.db, "SELECT count() FROM findings WHERE session_id = ? AND code = 'OVER_REFUND' AND status = 'resolved'", refund.SessionID); n != 1 {
		t.Fatal("a pass with no new evidence reopened the finding resolved by hand")
	}
	if n := chtest.Count(t, f.db, "SELECT count() FROM findings WHERE session_id = ? AND acknowledged_by = 'ada'", pg.SessionID); n != 1 {
		t.Fatal("a pass with no new evidence dropped the acknowledgement")
	}
	if alerts, _ := f.sink.snapshot(); len(alerts) != len(alertsBefore) {
		t.Fatalf("a pass with no new evidence alerted: %+v", alerts[len(alertsBefore):])
	}

	// New evidence on each: the same webhooks delivered again by Ottu (a new
	// delivery each; the rules still fire).
	redeliver := func(p ottusim.Parent) {
		w := p.Webhooks[len(p.Webhooks)-1]
		publishAt(t, f.pub, ottusim.Sign(w.Object, events.SchemeB, f.key), time.Now().UTC())
	}
	stored := chtest.Count(t, f.db, "SELECT count() FROM payment_events") + chtest.Count(t, f.db, "SELECT count() FROM operation_events")
	for _, p := range []ottusim.Parent{refund, pg, orphan} {
		redeliver(p)
	}
	waitFor(t, "the new deliveries stored", 30*time.Second, func() bool {
		return chtest.Count(t, f.db, "SELECT count() FROM payment_events")+chtest.Count(t, f.db, "SELECT count() FROM operation_events") == stored+3
	})
	if _, err := f.m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := chtest.Count(t, f.db, "SELECT count() FROM findings WHERE session_id = ? AND code = 'OVER_REFUND' AND status = 'open' AND resolved_by = ''", refund.SessionID); n != 1 {
		t.Fatal("new evidence with the rule still firing did not reopen the finding resolved by hand")
	}
	alerts, _ := f.sink.snapshot()
	alerted := map[string]bool{}
	for _, a := range alerts[len(alertsBefore):] {
		for _, x := range a.Findings {
			alerted[x.SessionID+"/"+x.Code] = true
			if want := "http://recon.example.com/payments/" + x.SessionID + "#" + x.Code; x.ConsoleURL != want {
				t.Errorf("console_url %q, want %q", x.ConsoleURL, want)
			}
		}
	}
	if !alerted[refund.SessionID+"/OVER_REFUND"] {
		t.Errorf("the reopened finding was not alerted: %v", alerted)
	}
	if alerted[orphan.SessionID+"/ORPHAN_OPERATION"] {
		t.Errorf("the muted finding was alerted")
	}

	// The list: filter by code, search by order_no or reference, count, export.
	_, list := op.do("GET", "/?status=all&code=PG_SIDE_OPERATION", nil, nil)
	if !strings.Contains(list, pg.SessionID) || strings.Contains(list, refund.SessionID) {
		t.Errorf("the code filter does not select PG_SIDE_OPERATION alone: %s", around(list, "<h2"))
	}
	// The acknowledgement was of the evidence before: with new evidence the
	// finding is open and unacknowledged again, and alerted again.
	_, list = op.do("GET", "/?status=acknowledged", nil, nil)
	if strings.Contains(list, pg.SessionID) || !alerted[pg.SessionID+"/PG_SIDE_OPERATION"] {
		t.Errorf("after new evidence: acknowledged list holds %s: %v; alerted again: %v", pg.SessionID,
			strings.Contains(list, pg.SessionID), alerted[pg.SessionID+"/PG_SIDE_OPERATION"])
	}
	ref := ""
	for _, w := range refund.Webhooks {
		if r, ok := w.Object["reference_number"].(string); ok && r != "" {
			ref = r
		}
	}
	_, list = op.do("GET", "/?status=all&q="+url.QueryEscape(ref), nil, nil)
	if !strings.Contains(list, refund.SessionID) || strings.Contains(list, pg.SessionID) {
		t.Errorf("search by reference_number %q does not find its payment alone: %s", ref, around(list, pg.SessionID))
	}
	resp, body := op.do("GET", "/findings.csv?status=all", nil, nil)
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("export: %v %s", err, resp.Header.Get("Content-Type"))
	}
	if want := chtest.Count(t, f.db, "SELECT count() FROM findings"); uint64(len(rows)-1) != want || rows[0][0] != "session_id" {
		t.Fatalf("export: %d rows, want %d and a header", len(rows)-1, want)
	}
}

// around is the text of page around s, for a failure message.
func around(page, s string) string {
	i := strings.Index(page, s)
	if i < 0 {
		return fmt.Sprintf("%q not in the page", s)
	}
	return page[max(0, i-400):min(len(page), i+200)]
}

// TestConsole_TLS: over HTTPS, the session cookie is Secure and __Host-
// prefixed (the browser keeps it to this host, on /, over TLS only), and
// pages ask the browser to keep to HTTPS.
func TestConsole_TLS(t *testing.T) {
	ns := natstest.MustOpenServer(t, "", "")
	db := chtest.MustOpenDB(t)
	cfg := testConfig(t, ns.ClientURL(), db)
	cfg.Console.Listen, cfg.Console.UsersFile = "127.0.0.1:0", consoleUsers(t, "ada", "operator", operatorPassword)
	cert := nettest.NewCert(t)
	cfg.Console.TLSCertFile, cfg.Console.TLSKeyFile = cert.CertFile, cert.KeyFile
	m := MustOpenMain(t, cfg)
	if !strings.HasPrefix(m.ConsoleURL(), "https://") {
		t.Fatalf("console at %s", m.ConsoleURL())
	}
	c := newClient(t, m.ConsoleURL())
	c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the test's own certificate
	resp, csrf := c.signIn("ada", operatorPassword)
	if resp.StatusCode != http.StatusSeeOther || csrf == "" {
		t.Fatalf("sign in over TLS: %d", resp.StatusCode)
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if strings.HasSuffix(ck.Name, "recon_session") {
			session = ck
		}
	}
	if session == nil || session.Name != "__Host-recon_session" || !session.Secure || !session.HttpOnly ||
		session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.Domain != "" {
		t.Fatalf("session cookie over TLS: %+v", session)
	}
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no Strict-Transport-Security over TLS")
	}
	if resp, _ := c.do("GET", "/", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("findings over TLS: %d", resp.StatusCode)
	}
}

// TestConsole_BehindProxy: behind a TLS-terminating proxy (RECON_CONSOLE_URL
// https, the proxy trusted by RECON_CONSOLE_TRUSTED_PROXIES), the session
// cookie is Secure and __Host- prefixed, a form posted from the public URL
// is the console's own although the proxy rewrote Host, and the sign-in
// throttle counts the client the proxy names, not the proxy.
func TestConsole_BehindProxy(t *testing.T) {
	ns, db, m, _ := mustRig(t, func(cfg *Config) {
		cfg.Console.Listen, cfg.Console.URL, cfg.Console.TrustedProxies = "127.0.0.1:0", "https://recon.example.com", "127.0.0.1/8"
		cfg.Console.UsersFile = consoleUsers(t, "ada", "operator", operatorPassword)
	})
	_, _ = ns, db
	c := newClient(t, m.ConsoleURL())
	_, page := c.do("GET", "/signin", nil, nil)
	tok := hiddenToken.FindStringSubmatch(page)
	if tok == nil {
		t.Fatal("no sign-in form token")
	}
	form := url.Values{"csrf": {tok[1]}, "name": {"ada"}, "password": {operatorPassword}}
	resp, _ := c.do("POST", "/signin", form, map[string]string{"Origin": "https://recon.example.com", "X-Forwarded-For": "203.0.113.7"})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in through the proxy: %d", resp.StatusCode)
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if strings.HasSuffix(ck.Name, "recon_session") {
			session = ck
		}
	}
	if session == nil || session.Name != "__Host-recon_session" || !session.Secure || !session.HttpOnly {
		t.Fatalf("session cookie %+v: want Secure, __Host- prefixed, HttpOnly", session)
	}
	// Thirty wrong passwords (for thirty names) from one client through the
	// proxy: its address is throttled past twenty;
	// another client through the same proxy is not.
	attempt := func(name, client string) int {
		t.Helper()
		g := newClient(t, m.ConsoleURL())
		_, page := g.do("GET", "/signin", nil, nil)
		tok := hiddenToken.FindStringSubmatch(page)
		if tok == nil {
			t.Fatal("no sign-in form token")
		}
		wrong := url.Values{"csrf": {tok[1]}, "name": {name}, "password": {"wrong-password-x"}}
		resp, _ := g.do("POST", "/signin", wrong, map[string]string{"X-Forwarded-For": client})
		return resp.StatusCode
	}
	throttled := 0
	for i := range 30 {
		if attempt(fmt.Sprintf("nobody%d", i), "203.0.113.9") == http.StatusTooManyRequests {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("thirty wrong passwords from one client behind the proxy were never throttled")
	}
	if code := attempt("nobody-else", "198.51.100.4"); code != http.StatusUnauthorized {
		t.Fatalf("another client behind the same proxy: %d, want 401 (not throttled)", code)
	}
}

// TestConsole_NewPasswordEndsSession: a session opened with a password ends
// at its next request once the user is given a new one.
func TestConsole_NewPasswordEndsSession(t *testing.T) {
	users := consoleUsers(t, "ada", "operator", operatorPassword)
	_, _, m, _ := mustRig(t, func(cfg *Config) { cfg.Console.Listen, cfg.Console.UsersFile = "127.0.0.1:0", users })
	c := newClient(t, m.ConsoleURL())
	if resp, _ := c.signIn("ada", operatorPassword); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	if resp, _ := c.do("GET", "/", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("findings page: %d", resp.StatusCode)
	}
	if err := console.AddUser(users, "ada", console.Operator, "a-brand-new-password"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old session refused", 10*time.Second, func() bool {
		resp, _ := c.do("GET", "/", nil, nil)
		return resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/signin"
	})
}
