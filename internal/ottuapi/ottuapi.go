// Package ottuapi calls Ottu's API on the merchant's own Ottu host: the
// Payment Status Query (docs/ottu-webhooks.md §7.1), which answers with
// Ottu's own record of a payment, signed like a payment webhook.
package ottuapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// InquiryPath is the Payment Status Query's path.
const InquiryPath = "/b/pbl/v2/inquiry/"

// ErrNotFound means Ottu has no payment with that session_id.
var ErrNotFound = errors.New("ottu: no such payment")

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
}

// Inquire asks Ottu's Payment Status Query about sessionID and returns the
// answer's raw body (a payment webhook object, signed) and status.
func (c *Client) Inquire(ctx context.Context, sessionID string) ([]byte, int, error) {
	payload, _ := json.Marshal(map[string]string{"session_id": sessionID})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.URL, "/")+InquiryPath, bytes.NewReader(payload))
	if err != nil {
		return nil, 0, errors.New("ottu: build inquiry request: bad OTTU_API_URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Api-Key "+c.APIKey)
	client := c.HTTP
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) { // *url.Error: drop the URL, keep the cause
			err = ue.Unwrap()
		}
		return nil, 0, fmt.Errorf("ottu: inquiry: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("ottu: read inquiry answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, resp.StatusCode, nil
	case http.StatusNotFound:
		return nil, resp.StatusCode, ErrNotFound
	case http.StatusTooManyRequests:
		wait := time.Minute
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		return nil, resp.StatusCode, &RateLimitedError{RetryAfter: wait}
	}
	return nil, resp.StatusCode, fmt.Errorf("ottu: inquiry answered %d", resp.StatusCode)
}
