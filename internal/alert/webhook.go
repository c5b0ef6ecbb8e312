// Package alert delivers reconciliation findings to people: Webhook POSTs one
// signed JSON object per pass (PRODUCT.md, "Alerts").
package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// SignatureHeader carries the lowercase hex HMAC-SHA256 of the raw body under ALERT_HMAC_KEY.
const SignatureHeader = "X-Recon-Signature"

// Payload is the alert body.
type Payload struct {
	RunID    string    `json:"run_id"`
	Count    int       `json:"count"`
	Findings []Finding `json:"findings"`
}

// Finding is one finding in an alert.
type Finding struct {
	SessionID string    `json:"session_id"`
	Code      string    `json:"code"`
	Severity  string    `json:"severity"`
	Detail    string    `json:"detail"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Status    string    `json:"status"`
}

// Encode renders an alert as the JSON body PRODUCT.md describes.
func Encode(a ledger.Alert) ([]byte, error) {
	p := Payload{RunID: a.RunID, Count: len(a.Findings), Findings: make([]Finding, len(a.Findings))}
	for i, r := range a.Findings {
		p.Findings[i] = Finding{SessionID: r.SessionID, Code: string(r.Code), Severity: string(r.Severity),
			Detail: r.Detail, FirstSeen: r.FirstSeen.UTC(), LastSeen: r.LastSeen.UTC(), Status: r.Status}
	}
	return json.Marshal(p)
}

// Sign returns the signature of body under key.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Webhook POSTs alerts to URL.
type Webhook struct {
	URL     string
	HMACKey []byte // optional: sign the body
	Client  *http.Client
}

var _ ledger.Notifier = (*Webhook)(nil)

// Notify POSTs the alert. Network errors, timeouts, 408, 429 and 5xx are
// retryable; any other non-2xx answer is not (the receiver refuses the request
// as it is).
func (w *Webhook) Notify(ctx context.Context, a ledger.Alert) (bool, error) {
	body, err := Encode(a)
	if err != nil {
		return false, fmt.Errorf("encode alert: %w", err)
	}
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("build alert request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ottu-recon")
	req.Header.Set("X-Recon-Run-Id", a.RunID)
	if len(w.HMACKey) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.HMACKey, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		return true, fmt.Errorf("post alert: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("post alert: status %d", resp.StatusCode)
	default:
		return false, fmt.Errorf("post alert: status %d", resp.StatusCode)
	}
}
