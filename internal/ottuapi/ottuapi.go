// Package ottuapi calls Ottu's API on the merchant's own Ottu host: the
// Payment Status Query (docs/ottu-webhooks.md §7.1), which answers with
// Ottu's own record of a payment, signed like a payment webhook.
package ottuapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// InquiryPath is the Payment Status Query's path.
const InquiryPath = "/b/pbl/v2/inquiry/"

// ErrNotFound means Ottu has no payment with that session_id: a 404 whose
// body is Ottu's documented error object ({"detail": "..."}). A 404 with any
// other body (a proxy's page, a wrong path on another server) is no verdict.
var ErrNotFound = errors.New("ottu: no such payment")

// NoAnswerError is a question Ottu did not answer as it documents: the call
// failed (no connection, a timeout), or the status and body are not Ottu's.
// It tells nothing about the payment.
type NoAnswerError struct {
	Status int // 0 when there was no HTTP answer
	Reason string
}

func (e *NoAnswerError) Error() string {
	if e.Status == 0 {
		return "ottu: no answer: " + e.Reason
	}
	return fmt.Sprintf("ottu: answered %d: %s", e.Status, e.Reason)
}

// DefaultTimeout bounds one question when the caller's context allows more.
const DefaultTimeout = 10 * time.Second

// CheckURL tells whether s may be OTTU_API_URL: https, or http on a loopback
// address only (the API key travels in a header).
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return errors.New("want the https URL of your Ottu host")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("want https: the API key must not travel in clear (http is accepted on loopback only)")
	}
	return errors.New("want the https URL of your Ottu host")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RateLimitedError is Ottu's 429: no question before RetryAfter.
type RateLimitedError struct{ RetryAfter time.Duration }

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("ottu: rate limited (429), retry after %s", e.RetryAfter)
}

// Client asks Ottu. Set the fields.
type Client struct {
	URL    string // the merchant's Ottu host, e.g. https://shop.ottu.net
	APIKey string // never logged
	HTTP   *http.Client
	// Timeout bounds one question (DefaultTimeout when 0); the caller's
	// context may end it sooner.
	Timeout time.Duration
}

// Inquire asks Ottu's Payment Status Query about the payment sessionID, or,
// when sessionID is empty, about the order orderNo, and returns the answer's
// raw body (a payment webhook object, signed, still to be verified) and
// status. It never asks Ottu to send the webhook again (notify_webhook_url,
// docs/completeness.md says why). Errors: ErrNotFound, *RateLimitedError,
// *NoAnswerError, or another error for an answer Ottu gave that is not a
// record (400, 401, 403).
func (c *Client) Inquire(ctx context.Context, sessionID, orderNo string) ([]byte, int, error) {
	if err := CheckURL(c.URL); err != nil {
		return nil, 0, fmt.Errorf("ottu: OTTU_API_URL: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(c.Timeout, DefaultTimeout))
	defer cancel()
	question := map[string]string{"session_id": sessionID}
	if sessionID == "" {
		question = map[string]string{"order_no": orderNo}
	}
	payload, _ := json.Marshal(question)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.URL, "/")+InquiryPath, bytes.NewReader(payload))
	if err != nil {
		return nil, 0, errors.New("ottu: build inquiry request: bad OTTU_API_URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Api-Key "+c.APIKey)
	client := c.HTTP
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // drop the URL, keep the cause
			err = ue.Err
		}
		return nil, 0, &NoAnswerError{Reason: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, resp.StatusCode, &NoAnswerError{Status: resp.StatusCode, Reason: "read the answer: " + err.Error()}
	}
	if len(body) > MaxAnswerBytes {
		return nil, resp.StatusCode, &NoAnswerError{Status: resp.StatusCode, Reason: "answer over 1 MiB"}
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, resp.StatusCode, nil
	case http.StatusNotFound:
		if isOttuError(body) {
			return nil, resp.StatusCode, ErrNotFound
		}
		return body, resp.StatusCode, &NoAnswerError{Status: resp.StatusCode, Reason: "not Ottu's documented answer (a JSON object with a detail): another server or a wrong path?"}
	case http.StatusTooManyRequests:
		wait := time.Minute
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		return nil, resp.StatusCode, &RateLimitedError{RetryAfter: wait}
	}
	if resp.StatusCode >= 500 {
		return body, resp.StatusCode, &NoAnswerError{Status: resp.StatusCode, Reason: "server error"}
	}
	return body, resp.StatusCode, fmt.Errorf("ottu: inquiry answered %d", resp.StatusCode)
}

// MaxAnswerBytes bounds an answer read.
const MaxAnswerBytes = 1 << 20

// isOttuError tells whether body is Ottu's documented error object for 401,
// 403, 404 and 415 (docs/ottu-webhooks.md §7.1): a JSON object whose
// "detail" is a string, and nothing else but an optional "result".
func isOttuError(body []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	var detail string
	if json.Unmarshal(m["detail"], &detail) != nil || detail == "" {
		return false
	}
	for k := range m {
		if k != "detail" && k != "result" {
			return false
		}
	}
	return true
}
