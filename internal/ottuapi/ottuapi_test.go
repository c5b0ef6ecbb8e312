package ottuapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestCheckURL: https, or http on loopback only (the API key would travel
// in clear).
func TestCheckURL(t *testing.T) {
	accepted := map[string]bool{
		"https://shop.ottu.net": true, "http://127.0.0.1:8080": true, "http://localhost:8080": true, "http://[::1]:8080": true,
		"http://shop.ottu.net": false, "http://10.0.0.5": false, "ftp://shop.ottu.net": false, "shop.ottu.net": false,
	}
	for url, ok := range accepted {
		if err := CheckURL(url); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok %v", url, err, ok)
		}
	}
}

// TestClient_Inquire: what each answer means. Only Ottu's documented error
// object makes a 404 "no such payment"; another 404, a 5xx, a timeout are no
// answer at all.
func TestClient_Inquire(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   func(error) bool
	}{
		{"OK", 200, `{"session_id":"s"}`, func(err error) bool { return err == nil }},
		{"ErrNotFound", 404, `{"detail": "Not found."}`, func(err error) bool { return errors.Is(err, ErrNotFound) }},
		{"ErrNotFound/result", 404, `{"detail": "Not found.", "result": "failed"}`, func(err error) bool { return errors.Is(err, ErrNotFound) }},
		{"NoAnswer/proxy page", 404, `<html>404 Not Found</html>`, noAnswer},
		{"NoAnswer/other JSON", 404, `{"error": "no route"}`, noAnswer},
		{"NoAnswer/detail and more", 404, `{"detail": "x", "path": "/b/pbl/v2/inquiry/"}`, noAnswer},
		{"NoAnswer/5xx", 502, `bad gateway`, noAnswer},
		{"ErrRateLimited", 429, `{"detail": "Request was throttled."}`, func(err error) bool {
			var rl *RateLimitedError
			return errors.As(err, &rl)
		}},
		{"ErrRefused", 400, `{"detail": "throttled", "result": "failed"}`, func(err error) bool {
			var na *NoAnswerError
			return err != nil && !errors.As(err, &na) && !errors.Is(err, ErrNotFound)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			_, _, err := (&Client{URL: srv.URL, APIKey: "k"}).Inquire(context.Background(), "s", "")
			if !tc.want(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("NoAnswer/hangs", func(t *testing.T) {
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
		defer srv.Close()
		defer close(block)
		start := time.Now()
		_, _, err := (&Client{URL: srv.URL, APIKey: "k", Timeout: 100 * time.Millisecond}).Inquire(context.Background(), "s", "")
		if !noAnswer(err) || time.Since(start) > 5*time.Second {
			t.Fatalf("got %v after %s", err, time.Since(start))
		}
	})
	t.Run("ErrInsecureURL", func(t *testing.T) {
		if _, _, err := (&Client{URL: "http://shop.example.com", APIKey: "k"}).Inquire(context.Background(), "s", ""); err == nil {
			t.Fatal("asked over http")
		}
	})
}

func noAnswer(err error) bool {
	var na *NoAnswerError
	return errors.As(err, &na)
}
