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
	body, err := alert.Encode(ledger.Alert{Findings: []ledger.Record{{Finding: ledger.Finding{Detail: strings.Repeat("x\n", 4000)}}}})
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
