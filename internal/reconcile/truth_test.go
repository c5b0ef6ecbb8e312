package reconcile

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

var latestOnPage = regexp.MustCompile(`<dt>Latest state</dt><dd>([^<]*)</dd><dt>Amount</dt><dd>([^ <]*) `)

// TestConsole_StoryIsTheLedgers: every corpus payment's page says what the
// ledger folds (the store's Parents, as the pass reads them) and what the
// payments view says: its latest state and amount, for deliveries that
// arrived in order and for a second corpus delivered in reverse (each
// parent's last webhook first).
func TestConsole_StoryIsTheLedgers(t *testing.T) {
	f := newConsoleFixture(t)
	// Another seed than the fixture's: other parents.
	gen := &ottusim.Generator{Rand: rand.New(rand.NewPCG(7, 11)), Now: time.Now().UTC(), Grace: f.m.Config.Grace}
	arrive := time.Now().UTC().Add(-30 * time.Minute)
	stored := func() uint64 {
		return chtest.Count(t, f.db, "SELECT count() FROM webhooks_raw") + chtest.Count(t, f.db, "SELECT count() FROM unreadable_webhooks")
	}
	n := stored()
	sent := map[string]bool{}
	for _, k := range append(append([]ottusim.Kind(nil), ottusim.AnomalyKinds...), ottusim.CleanKinds...) {
		p := gen.Parent(k)
		for i := len(p.Webhooks) - 1; i >= 0; i-- { // the last first
			body := ottusim.Sign(p.Webhooks[i].Object, events.SchemeA, f.key)
			arrive = arrive.Add(time.Second)
			publishAt(t, f.pub, body, arrive)
			sent[string(body)] = true
		}
		f.parents = append(f.parents, p)
	}
	waitFor(t, "the reversed corpus stored", 60*time.Second, func() bool {
		return stored() >= n+uint64(len(sent))
	})
	folded := map[string]*ledger.Parent{}
	if err := (&clickhouse.Store{DB: f.db}).Parents(context.Background(), ledger.Selection{All: true}, func(p *ledger.Parent) error {
		folded[p.SessionID] = p
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c := f.client(t)
	c.signIn("bob", viewerPassword)
	compared := 0
	for _, p := range f.parents {
		want := folded[p.SessionID]
		if want == nil || !want.HasPayment {
			continue // no payment webhook (an orphan operation): the page shows no state
		}
		resp, page := c.do("GET", "/payments/"+p.SessionID, nil, nil)
		m := latestOnPage.FindStringSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("%s (%s): %d, no latest state on the page", p.SessionID, p.Kind, resp.StatusCode)
		}
		amount := want.Amount.Decimal.StringFixed(events.CurrencyDecimals(want.Currency))
		var viewState string
		if err := f.db.Conn().QueryRow(context.Background(), "SELECT state FROM payments WHERE session_id = ?", p.SessionID).Scan(&viewState); err != nil {
			t.Fatal(err)
		}
		if m[1] != want.State || m[2] != amount || viewState != want.State {
			t.Errorf("%s (%s): the page says %s %s, the ledger %s %s, the payments view %s", p.SessionID, p.Kind, m[1], m[2], want.State, amount, viewState)
		}
		compared++
	}
	if compared < len(f.parents)/2 {
		t.Fatalf("compared %d payments of %d", compared, len(f.parents))
	}
}

// TestConsole_ViewerSeesNoPersonalData: marker values in every personal
// field of a payment, as strings, numbers and nested objects, never reach a
// viewer: not on any page a viewer can open, not in the export.
func TestConsole_ViewerSeesNoPersonalData(t *testing.T) {
	f := newConsoleFixture(t)
	p := f.parent(t, ottusim.Kind(ledger.SandboxInLive))
	obj := p.Webhooks[0].Object
	planted := map[string]any{
		"customer_email": "mrk-mail@markers.example", "customer_first_name": "MRKFIRST", "customer_last_name": "MRKLAST",
		"customer_phone": 96599887766, "customer_id": "MRKCID", "customer_birthdate": "MRKBIRTH",
		"customer_address_line1": map[string]any{"street": map[string]any{"name": "MRKSTREET", "no": 4455667}},
		"customer_address_line2": []any{"MRKLINE2", 11223344}, "customer_address_city": "MRKCITY", "customer_address_state": "MRKSTATE",
		"customer_address_postal_code": 77665544, "customer_address_country": "MR",
		"pg_params": map[string]any{"card_holder": "MRKHOLDER", "card_number": 4111222233334444, "cardholder_email": "mrk-holder@markers.example",
			"rrn": "RRN-not-personal"},
		"initiator": map[string]any{"email": "mrk-staff@markers.example", "username": "MRKUSER", "first_name": "MRKSTAFF", "phone": 96511112222},
		"token":     map[string]any{"name_on_card": "MRKNOC", "number": "MRKTOKNUM", "customer_id": "MRKTCID", "token": "9491500736137502"},
	}
	for k, v := range planted {
		obj[k] = v
	}
	body := ottusim.Sign(obj, events.SchemeA, f.key)
	publishAt(t, f.pub, body, time.Now().UTC())
	waitFor(t, "the planted delivery stored", 30*time.Second, func() bool {
		return chtest.Count(t, f.db, "SELECT count() FROM webhooks_raw WHERE position(body, 'MRKFIRST') > 0") == 1
	})
	markers := []string{"mrk", "99887766", "4455667", "11223344", "77665544", "4111222233334444", "11112222", "9491500736137502"}
	c := f.client(t)
	c.signIn("bob", viewerPassword)
	check := func(path, page string) {
		t.Helper()
		for _, m := range markers {
			if strings.Contains(strings.ToLower(page), m) {
				i := strings.Index(strings.ToLower(page), m)
				t.Errorf("%s shows a viewer %q: …%s…", path, m, page[max(0, i-80):min(len(page), i+80)])
			}
		}
	}
	paths := []string{"/", "/?status=all", "/?status=all&q=" + p.SessionID, "/select?status=all", "/mutes", "/payments/" + p.SessionID,
		"/findings.csv?status=all"}
	_, page := c.do("GET", "/payments/"+p.SessionID, nil, nil)
	for _, m := range regexp.MustCompile(`href="(/payments/[^"]+/deliveries/[^"/]+)"`).FindAllStringSubmatch(page, -1) {
		paths = append(paths, m[1], m[1]+"/body")
	}
	if len(paths) < 9 {
		t.Fatalf("no delivery linked from the payment's page")
	}
	for _, path := range paths {
		resp, page := c.do("GET", path, nil, nil)
		if strings.HasSuffix(path, "/body") {
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: a viewer downloads the body whole (%d)", path, resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if strings.HasSuffix(path, "csv?status=all") {
			if rows, err := csv.NewReader(strings.NewReader(page)).ReadAll(); err != nil || len(rows) < 2 {
				t.Fatalf("export: %d rows, %v", len(rows), err)
			}
		}
		check(path, page)
	}
	// An operator sees the body as it came (the markers are really there).
	op := f.client(t)
	op.signIn("ada", operatorPassword)
	if _, page := op.do("GET", paths[len(paths)-2], nil, nil); !strings.Contains(page, "MRKFIRST") {
		t.Fatalf("the operator's raw page does not show the planted body: %s", fmt.Sprint(len(page)))
	}
}
