package console

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		name         string
		origin, site string
		want         bool
	}{
		{"no headers (an old browser, a script)", "", "", true},
		{"same origin", "http://console.example:8443", "same-origin", true},
		{"typed or bookmarked", "", "none", true},
		{"another origin", "https://evil.example", "", false},
		{"another port", "http://console.example:9999", "same-origin", false},
		{"same site, other origin", "http://console.example:8443", "same-site", false},
		{"cross site", "", "cross-site", false},
		{"opaque origin from this origin", "null", "same-origin", true},
		{"opaque origin from elsewhere", "null", "cross-site", false},
		{"opaque origin, no fetch metadata", "null", "", false},
		{"not a URL", "::", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://console.example:8443/actions", nil)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.site != "" {
				r.Header.Set("Sec-Fetch-Site", tt.site)
			}
			if got := (&Console{}).sameOrigin(r); got != tt.want {
				t.Fatalf("sameOrigin = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSameOrigin_PublicURL: behind a proxy that rewrites Host, a form
// posted from the console's public URL is its own; the same host over
// another scheme is not.
func TestSameOrigin_PublicURL(t *testing.T) {
	c := &Console{PublicURL: "https://recon.example.com"}
	r := httptest.NewRequest("POST", "http://10.0.0.5:8443/actions", nil)
	r.Header.Set("Origin", "https://recon.example.com")
	if !c.sameOrigin(r) {
		t.Error("the public URL refused")
	}
	r.Header.Set("Origin", "http://recon.example.com")
	if c.sameOrigin(r) {
		t.Error("the public host over http accepted")
	}
}

func TestThrottle(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	th := &Throttle{Now: func() time.Time { return now }}
	for i := range 6 { // counted as they start: five free, the sixth starts the waits
		if w := th.Attempt("name:ada", "ip:10.0.0.1"); w != 0 {
			t.Fatalf("attempt %d waits %s", i+1, w)
		}
	}
	if w := th.Attempt("name:ada", "ip:10.0.0.1"); w != time.Second {
		t.Fatalf("after 6 attempts: wait %s, want 1s", w)
	}
	now = now.Add(time.Second)
	th.Attempt("name:ada", "ip:10.0.0.1")
	if w := th.Attempt("name:ada"); w != 2*time.Second {
		t.Fatalf("after 7 attempts: wait %s, want 2s (doubling)", w)
	}
	if w := th.Attempt("name:bob", "ip:10.0.0.1"); w != 0 {
		t.Fatalf("another name from the same address waits %s: the address allows four times as many", w)
	}
	for range 40 {
		now = now.Add(15 * time.Minute)
		th.Attempt("name:ada")
	}
	if w := th.Attempt("name:ada"); w != 15*time.Minute {
		t.Fatalf("wait %s, want the 15 min cap", w)
	}
	th.Succeed("name:ada")
	if w := th.Attempt("name:ada"); w != 0 {
		t.Fatalf("after a success: wait %s", w)
	}
	th.Forgive("name:ada")
	now = now.Add(16 * time.Minute)
	th.Attempt("name:carol")
	if len(th.keys) != 1 {
		t.Fatalf("old attempts kept: %v", th.keys)
	}
}

// TestThrottle_Burst: attempts sent at the same moment are counted as they
// start, before any password is checked: of twenty, six go ahead.
func TestThrottle_Burst(t *testing.T) {
	th := &Throttle{}
	var wg sync.WaitGroup
	var ahead atomic.Int32
	for range 20 {
		wg.Go(func() {
			if th.Attempt("name:ada", "ip:10.0.0.1") == 0 {
				ahead.Add(1)
			}
		})
	}
	wg.Wait()
	if n := ahead.Load(); n != 6 {
		t.Fatalf("%d of 20 simultaneous attempts went ahead, want 6", n)
	}
}

func TestPrettyBody(t *testing.T) {
	body := []byte(`{"session_id":"s1","amount":"10.500","customer_email":"sara@example.com","customer_phone":"+96550000001",
		"extra":{"billing":{"Mobile_Number":"+96599999999"}},"notes":[{"contact_email":"x@y.kw"}],
		"customer_first_name":"Noura","customer_last_name":"Alsabah","payer_phone":96512345678,
		"shipping_address":{"line1":"Block 3 Street 12","zip":13001,"geo":[29.37,47.97]}}`)
	masked := prettyBody(body, true)
	for _, secret := range []string{"sara@example.com", "+96550000001", "+96599999999", "x@y.kw", "Noura", "Alsabah", "96512345678",
		"Street 12", "13001", "47.97"} {
		if strings.Contains(masked, secret) {
			t.Errorf("masked body shows %s:\n%s", secret, masked)
		}
	}
	for _, kept := range []string{`"10.500"`, `"s•••••.com"`, `"+•••••"`} {
		if !strings.Contains(masked, kept) {
			t.Errorf("masked body lacks %s:\n%s", kept, masked)
		}
	}
	if whole := prettyBody(body, false); !strings.Contains(whole, "sara@example.com") || !strings.Contains(whole, `"10.500"`) {
		t.Errorf("operator's body: %s", whole)
	}
	if got := prettyBody([]byte("not json <b>sara@example.com</b>"), true); strings.Contains(got, "sara") {
		t.Errorf("a body that is not JSON is shown masked: %s", got)
	}
}

func TestFilterOf(t *testing.T) {
	tests := []struct {
		query string
		want  Filter
	}{
		{"", Filter{Status: "open"}},
		{"status=resolved&code=OVER_REFUND&severity=critical&age=7d&gateway=knet&currency=KWD&q=+ORD-1+",
			Filter{Status: "resolved", Code: "OVER_REFUND", Severity: "critical", OlderThan: 7 * 24 * time.Hour,
				Gateway: "knet", Currency: "KWD", Search: "ORD-1"}},
		{"status=bogus&code=DROP+TABLE&severity=huge&age=1y", Filter{Status: "open"}},
		{"q=" + strings.Repeat("x", 201), Filter{Status: "open"}},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got := filterOf(q)
		if got != tt.want {
			t.Errorf("%q: %+v, want %+v", tt.query, got, tt.want)
		}
		// The list's links keep the filter.
		back, _ := url.ParseQuery(strings.TrimPrefix(query(got, 2), "?"))
		if again := filterOf(back); again != got || back.Get("page") != "2" {
			t.Errorf("%q: round trip %+v", tt.query, again)
		}
	}
}

// TestStory: the page's figures are the ledger's fold of the deliveries
// (ledger.Story), each operation at its latest state; a paid webhook that
// arrived before the earlier pending one leaves the payment paid, as the
// payments view and the pass say.
func TestStory(t *testing.T) {
	d := func(s string) *decimal.Decimal { v := decimal.RequireFromString(s); return &v }
	at := func(m int) time.Time { return time.Date(2026, 12, 1, 10, m, 0, 0, time.UTC) }
	steps := ledger.Story(storyDeliveries([]casefile.Delivery{
		{Kind: "payment", State: "authorized", Amount: d("100.000"), ReceivedAt: at(0), Timestamp: at(0)},
		{Kind: "operation", Operation: "capture", ReferenceNumber: "c1", State: "paid", TxnAmount: d("60.000"), ReceivedAt: at(1), Timestamp: at(1)},
		{Kind: "operation", Operation: "refund", ReferenceNumber: "r1", State: "refund_queued", TxnAmount: d("10.000"), ReceivedAt: at(2), Timestamp: at(2)},
		{Kind: "unreadable", ReceivedAt: at(3)},
		{Kind: "operation", Operation: "refund", ReferenceNumber: "r1", State: "refunded", TxnAmount: d("10.000"), ReceivedAt: at(4), Timestamp: at(4)},
		{Kind: "operation", Operation: "capture", ReferenceNumber: "c1", State: "paid", TxnAmount: d("60.000"), ReceivedAt: at(5), Timestamp: at(1)}, // again
	}))
	want := []struct{ paid, captured, refunded string }{
		{"100", "0", "0"}, {"100", "60", "0"}, {"100", "60", "0"}, {"100", "60", "10"}, {"100", "60", "10"},
	}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d (the unreadable delivery adds none)", len(steps), len(want))
	}
	for i, w := range want {
		p := steps[i]
		if !p.Collected.Equal(decimal.RequireFromString(w.paid)) || !p.Captured.Equal(decimal.RequireFromString(w.captured)) ||
			!p.Refunded.Equal(decimal.RequireFromString(w.refunded)) || !p.Voided.IsZero() {
			t.Errorf("step %d: %+v, want %+v", i, p, w)
		}
	}
	outOfOrder := ledger.Story(storyDeliveries([]casefile.Delivery{
		{Kind: "payment", State: "paid", Amount: d("25.500"), ReceivedAt: at(6), Timestamp: at(5)},
		{Kind: "payment", State: "pending", Amount: d("25.500"), ReceivedAt: at(7), Timestamp: at(0)},
	}))
	if last := outOfOrder[len(outOfOrder)-1]; last.State != "paid" || !last.Collected.Equal(decimal.RequireFromString("25.5")) {
		t.Fatalf("paid, then the earlier pending: the page says %+v, want paid as the ledger folds it", last)
	}
}

func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{"=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")", "+1": "'+1", "-2": "'-2", "@a": "'@a",
		"refunds sum": "refunds sum", "": ""} {
		if got := csvSafe(in); got != want {
			t.Errorf("csvSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
