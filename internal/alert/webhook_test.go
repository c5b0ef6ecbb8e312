package alert_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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
