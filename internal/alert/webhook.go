// Package alert delivers reconciliation findings to people: Webhook POSTs one
// signed JSON object per pass (docs/product.md, "Alerts").
package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// SignatureHeader carries the lowercase hex HMAC-SHA256 of the raw body under ALERT_HMAC_KEY.
const SignatureHeader = "X-Recon-Signature"

// The Standard Webhooks headers (docs/product.md, "Alerts"): webhook-id is
// the same for every delivery of the same finding versions, so a receiver
// can drop a copy; webhook-signature covers id, timestamp and body, so a
// captured alert cannot be replayed once its timestamp is too old.
const (
	IDHeader        = standardwebhooks.HeaderWebhookID
	TimestampHeader = standardwebhooks.HeaderWebhookTimestamp
	SigHeader       = standardwebhooks.HeaderWebhookSignature
)

// Payload is the alert body.
type Payload struct {
	ID       string    `json:"id"` // the webhook-id header
	RunID    string    `json:"run_id"`
	Count    int       `json:"count"`
	Findings []Finding `json:"findings"`
}

// Finding is one finding in an alert.
type Finding struct {
	ID        string    `json:"id"` // stable for this version of the finding (ledger.Record.VersionID)
	SessionID string    `json:"session_id"`
	Code      string    `json:"code"`
	Severity  string    `json:"severity"`
	Detail    string    `json:"detail"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Status    string    `json:"status"`
	// ConsoleURL opens the finding in the console (with RECON_CONSOLE_URL).
	ConsoleURL string `json:"console_url,omitempty"`
}

// ID is the id of an alert or announcement carrying a's findings: the same
// whenever the same finding versions are carried again.
func ID(a ledger.Alert) string { return "alert_" + ledger.PartID(a.Findings) }

// Encode renders an alert as the JSON body docs/product.md describes. With
// consoleURL (the console's base URL) each finding carries a link to it.
func Encode(a ledger.Alert, consoleURL string) ([]byte, error) {
	p := Payload{ID: ID(a), RunID: a.RunID, Count: len(a.Findings), Findings: make([]Finding, len(a.Findings))}
	for i, r := range a.Findings {
		p.Findings[i] = Finding{ID: r.VersionID(), SessionID: r.SessionID, Code: string(r.Code), Severity: string(r.Severity),
			Detail: ledger.CleanDetail(r.Detail), FirstSeen: r.FirstSeen.UTC(), LastSeen: r.LastSeen.UTC(), Status: r.Status}
		if consoleURL != "" {
			p.Findings[i].ConsoleURL = FindingURL(consoleURL, r.SessionID, string(r.Code))
		}
	}
	return json.Marshal(p)
}

// FindingURL is where the console shows a finding: its payment's page, at
// the finding.
func FindingURL(base, sessionID, code string) string {
	return strings.TrimRight(base, "/") + "/payments/" + url.PathEscape(sessionID) + "#" + code
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
	HMACKey []byte // optional: sign the body; a key written whsec_<base64> is decoded for webhook-signature
	// ConsoleURL, when set, is the console's base URL: each finding links to it.
	ConsoleURL string
	Client     *http.Client
	Now        func() time.Time // default time.Now: webhook-timestamp
}

// standard returns the Standard Webhooks signer of key: a key written
// "whsec_" + base64 is that convention's, decoded; any other is used as it is.
func standard(key []byte) (*standardwebhooks.Webhook, error) {
	if s := string(key); strings.HasPrefix(s, "whsec_") {
		return standardwebhooks.NewWebhook(s)
	}
	return standardwebhooks.NewWebhookRaw(key)
}

// CheckKey tells whether key can sign alerts (a whsec_ key must be base64).
func CheckKey(key []byte) error {
	_, err := standard(key)
	if err != nil {
		return errors.New("a key written whsec_... must be base64 after the prefix")
	}
	return nil
}

var _ ledger.Notifier = (*Webhook)(nil)

// keepPost follows only redirects that keep the POST and its body (307,
// 308), a few at most. Any other redirect would turn the POST into a GET,
// whose 200 is no delivery: it is answered as it is, and Notify fails it.
func keepPost(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("more than 3 redirects")
	}
	switch req.Response.StatusCode {
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return nil
	}
	return http.ErrUseLastResponse
}

// Notify POSTs the alert. Network errors, timeouts, 408, 429 and 5xx are
// retryable. 400, 413 and 422 refuse what the alert carries: the error wraps
// ledger.ErrAlertRefused, so the reconciler splits the alert. A redirect
// (other than 307/308, which are followed with the POST) and any other status
// fail the delivery; it is tried again at the next pass.
func (w *Webhook) Notify(ctx context.Context, a ledger.Alert) (bool, error) {
	body, err := Encode(a, w.ConsoleURL)
	if err != nil {
		return false, fmt.Errorf("encode alert: %w", err)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if w.Client != nil {
		c := *w.Client
		client = &c
	}
	if client.CheckRedirect == nil {
		client.CheckRedirect = keepPost
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("build alert request: %w", redact(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ottu-recon")
	req.Header.Set("X-Recon-Run-Id", a.RunID)
	id, at := ID(a), time.Now()
	if w.Now != nil {
		at = w.Now()
	}
	req.Header.Set(IDHeader, id)
	req.Header.Set(TimestampHeader, strconv.FormatInt(at.Unix(), 10))
	if len(w.HMACKey) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.HMACKey, body))
		sw, err := standard(w.HMACKey)
		if err != nil {
			return false, fmt.Errorf("sign alert: ALERT_HMAC_KEY: %w", err)
		}
		sig, err := sw.Sign(id, at, body)
		if err != nil {
			return false, fmt.Errorf("sign alert: %w", err)
		}
		req.Header.Set(SigHeader, sig)
	}
	resp, err := client.Do(req)
	if err != nil {
		return true, fmt.Errorf("post alert: %w", redact(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return false, nil
	case code >= 300 && code < 400:
		return false, fmt.Errorf("post alert: status %d, a redirect to %q is not a delivery (fix ALERT_WEBHOOK_URL)",
			code, RedactURL(resp.Header.Get("Location")))
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return true, fmt.Errorf("post alert: status %d", code)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnprocessableEntity:
		return false, fmt.Errorf("post alert of %d finding(s): status %d: %w", len(a.Findings), code, ledger.ErrAlertRefused)
	default:
		return false, fmt.Errorf("post alert: status %d", code)
	}
}

// RedactURL renders a URL without what may be a secret in it: user
// information, path (Slack-style webhooks keep their token there), query and
// fragment. What is left names the host, which is what an operator needs to
// recognise a misdirected URL.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(a URL, not shown)"
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/…"
	}
	return out
}

// redact strips the request URL from an HTTP client error: alert URLs often
// carry a token (Slack-style webhooks).
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, RedactURL(ue.URL), ue.Err)
	}
	return err
}
