package alert_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ottu-recon/ottu-recon/internal/alert"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

func TestWebhook_Notify(t *testing.T) {
	alertFor := ledger.Alert{RunID: "run-1", Findings: []ledger.Record{{
		Finding:   ledger.Finding{SessionID: "s1", Code: ledger.OverRefund, Severity: ledger.Critical, Detail: "too much"},
		Status:    ledger.StatusOpen,
		FirstSeen: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC), LastSeen: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC),
	}}}
	tests := []struct {
		name      string
		status    int
		wantErr   bool
		wantRetry bool
	}{
		{"OK", 200, false, false},
		{"OK/204", 204, false, false},
		{"ErrServer", 503, true, true},
		{"ErrRateLimited", 429, true, true},
		{"ErrRefused", 400, true, false},
		{"ErrTooLarge", 413, true, false},
		{"ErrNotFound", 404, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			var sig string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ = io.ReadAll(r.Body)
				sig = r.Header.Get(alert.SignatureHeader)
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			n := &alert.Webhook{URL: srv.URL, HMACKey: []byte("alert-key")}
			retry, err := n.Notify(context.Background(), alertFor)
			if (err != nil) != tt.wantErr || retry != tt.wantRetry {
				t.Fatalf("got retry=%v err=%v, want retry=%v err=%v", retry, err, tt.wantRetry, tt.wantErr)
			}
			if sig != alert.Sign([]byte("alert-key"), body) {
				t.Fatalf("signature %q does not match the body", sig)
			}
			var p struct {
				RunID    string           `json:"run_id"`
				Findings []map[string]any `json:"findings"`
			}
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			f := p.Findings[0]
			if p.RunID != "run-1" || f["session_id"] != "s1" || f["code"] != "OVER_REFUND" || f["severity"] != "critical" ||
				f["detail"] != "too much" || f["first_seen"] != "2026-06-01T12:00:00Z" {
				t.Fatalf("body: %s", body)
			}
		})
	}
	t.Run("ErrUnreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		retry, err := (&alert.Webhook{URL: url}).Notify(context.Background(), alertFor)
		if err == nil || !retry {
			t.Fatalf("got retry=%v err=%v, want a retryable error", retry, err)
		}
	})
}

// TestWebhook_Redirects: a 302 (which would turn the POST into a GET) is a
// failed delivery that names where it points, never a success; a 307 keeps
// the POST and is followed.
func TestWebhook_Redirects(t *testing.T) {
	a := ledger.Alert{RunID: "r", Findings: []ledger.Record{{Finding: ledger.Finding{SessionID: "s", Code: ledger.OverRefund}}}}
	var posts, gets int
	final := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if b, _ := io.ReadAll(r.Body); len(b) > 0 {
				posts++
			}
		} else {
			gets++
		}
	}))
	defer final.Close()
	redirect := func(code int) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, final.URL+"/hooks?token=secret-token", code)
		}))
	}
	moved := redirect(http.StatusFound)
	defer moved.Close()
	retry, err := (&alert.Webhook{URL: moved.URL}).Notify(context.Background(), a)
	if err == nil || retry || posts+gets != 0 {
		t.Fatalf("302: retry=%v err=%v, posts %d gets %d; want a failed delivery and no request to the target", retry, err, posts, gets)
	}
	if !strings.Contains(err.Error(), final.URL) || strings.Contains(err.Error(), "secret-token") {
		t.Fatalf("302 error should name the Location without its token: %v", err)
	}
	kept := redirect(http.StatusTemporaryRedirect)
	defer kept.Close()
	if _, err := (&alert.Webhook{URL: kept.URL}).Notify(context.Background(), a); err != nil || posts != 1 || gets != 0 {
		t.Fatalf("307: err=%v, posts %d gets %d; want the POST delivered", err, posts, gets)
	}
}

func TestWebhook_RefusedSplits(t *testing.T) {
	for _, code := range []int{400, 413, 422} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
		_, err := (&alert.Webhook{URL: srv.URL}).Notify(context.Background(), ledger.Alert{})
		srv.Close()
		if !errors.Is(err, ledger.ErrAlertRefused) {
			t.Errorf("%d: %v does not wrap ErrAlertRefused", code, err)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }))
	defer srv.Close()
	if _, err := (&alert.Webhook{URL: srv.URL}).Notify(context.Background(), ledger.Alert{}); errors.Is(err, ledger.ErrAlertRefused) {
		t.Errorf("401 is about the endpoint, not the alert: %v", err)
	}
}

func TestWebhook_NoTokenInErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	_, err := (&alert.Webhook{URL: "http://user:pa55word@" + strings.TrimPrefix(u, "http://") + "/services/T000/B000?token=xoxb-secret"}).
		Notify(context.Background(), ledger.Alert{})
	if err == nil || strings.Contains(err.Error(), "pa55word") || strings.Contains(err.Error(), "xoxb-secret") || strings.Contains(err.Error(), "B000") {
		t.Fatalf("error leaks a secret: %v", err)
	}
}

func TestEncode_DetailBounded(t *testing.T) {
	body, err := alert.Encode(ledger.Alert{Findings: []ledger.Record{{Finding: ledger.Finding{Detail: strings.Repeat("x\n", 4000)}}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	var p alert.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if d := p.Findings[0].Detail; len(d) > ledger.MaxDetail || strings.ContainsAny(d, "\n") {
		t.Fatalf("detail of %d bytes, newlines kept: %v", len(d), strings.Contains(d, "\n"))
	}
}

// TestWebhook_StandardWebhooks: an alert carries webhook-id (the same for the
// same finding versions, whatever the run or the order), webhook-timestamp
// and webhook-signature, which the convention's reference library verifies
// (with a whsec_ key base64-decoded, and with a plain key as it is), and
// which it refuses once the timestamp is old: a captured alert cannot be
// replayed later. Each finding carries its version id in the body.
func TestWebhook_StandardWebhooks(t *testing.T) {
	rec := func(s, detail string) ledger.Record {
		return ledger.Record{Finding: ledger.Finding{SessionID: s, Code: ledger.OverRefund, Severity: ledger.Critical, Detail: detail},
			Status: ledger.StatusOpen, FirstSeen: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	}
	type got struct {
		h    http.Header
		body []byte
	}
	var last got
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		last = got{r.Header.Clone(), b}
	}))
	defer srv.Close()
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	for _, key := range []string{secret, "plain-key"} {
		at := time.Now()
		n := &alert.Webhook{URL: srv.URL, HMACKey: []byte(key), Now: func() time.Time { return at }}
		a := ledger.Alert{RunID: "run-1", Findings: []ledger.Record{rec("s1", "d1"), rec("s2", "d2")}}
		if _, err := n.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		first := last
		var wh *standardwebhooks.Webhook
		if strings.HasPrefix(key, "whsec_") {
			wh, _ = standardwebhooks.NewWebhook(key)
		} else {
			wh, _ = standardwebhooks.NewWebhookRaw([]byte(key))
		}
		if err := wh.Verify(first.body, first.h); err != nil {
			t.Fatalf("key %q: the reference library refuses the alert: %v", key, err)
		}
		if first.h.Get(alert.SignatureHeader) != alert.Sign([]byte(key), first.body) {
			t.Fatalf("X-Recon-Signature no longer signs the body")
		}
		// Another run, the findings in another order: the same id.
		a2 := ledger.Alert{RunID: "run-2", Findings: []ledger.Record{rec("s2", "d2"), rec("s1", "d1")}}
		if _, err := n.Notify(context.Background(), a2); err != nil {
			t.Fatal(err)
		}
		if id := first.h.Get("webhook-id"); id == "" || last.h.Get("webhook-id") != id {
			t.Fatalf("webhook-id %q then %q: want the same for the same findings", id, last.h.Get("webhook-id"))
		}
		// A new version of one finding: a new id.
		a3 := ledger.Alert{RunID: "run-2", Findings: []ledger.Record{rec("s1", "d1"), rec("s2", "d2 changed")}}
		if _, err := n.Notify(context.Background(), a3); err != nil {
			t.Fatal(err)
		}
		if last.h.Get("webhook-id") == first.h.Get("webhook-id") {
			t.Fatal("webhook-id unchanged for a new finding version")
		}
		var body struct {
			ID       string `json:"id"`
			Findings []struct {
				ID string `json:"id"`
			} `json:"findings"`
		}
		if err := json.Unmarshal(first.body, &body); err != nil || body.ID != first.h.Get("webhook-id") ||
			len(body.Findings) != 2 || body.Findings[0].ID != rec("s1", "d1").VersionID() {
			t.Fatalf("body ids: %+v %v", body, err)
		}
		// Replayed ten minutes later: refused by a receiver that checks the timestamp.
		at = time.Now().Add(-10 * time.Minute)
		if _, err := n.Notify(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(last.body, last.h); !errors.Is(err, standardwebhooks.ErrMessageTooOld) {
			t.Fatalf("an old alert verified: %v", err)
		}
	}
}

// TestEncode_ConsoleURL: with the console's base URL, each finding links to
// its payment's page at the finding; without, there is no console_url.
func TestEncode_ConsoleURL(t *testing.T) {
	a := ledger.Alert{Findings: []ledger.Record{{Finding: ledger.Finding{SessionID: "sess/1 x", Code: ledger.OverRefund}}}}
	for _, tt := range []struct{ base, want string }{
		{"https://recon.example.com/", "https://recon.example.com/payments/sess%2F1%20x#OVER_REFUND"},
		{"", ""},
	} {
		body, err := alert.Encode(a, tt.base)
		if err != nil {
			t.Fatal(err)
		}
		var p alert.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if got := p.Findings[0].ConsoleURL; got != tt.want {
			t.Errorf("base %q: console_url %q, want %q", tt.base, got, tt.want)
		}
		if tt.want == "" && strings.Contains(string(body), "console_url") {
			t.Errorf("without a console: %s", body)
		}
	}
}
