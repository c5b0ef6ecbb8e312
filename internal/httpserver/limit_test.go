package httpserver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestLimitRequests: over HTTP/2 one connection carries many requests: the
// requests in progress stay within the limit, and so do the bytes of bodies
// being read; every request is served in the end.
func TestLimitRequests(t *testing.T) {
	t.Run("requests", func(t *testing.T) { checkLimit(t, 4, 100, 1<<20, 4) })
	t.Run("body bytes", func(t *testing.T) { checkLimit(t, 100, 1000, 3000, 3) })
}

// checkLimit sends 20 requests of bodyBytes at once to a handler limited to
// requests in progress and budget bytes read at once, and wants at most want
// of them in progress at any time, and all served.
func checkLimit(t *testing.T, requests int, bodyBytes, budget, want int64) {
	var now, most, arrived atomic.Int64
	release := make(chan struct{})
	limited := limitRequests(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		<-release
		_, _ = io.ReadAll(r.Body)
		now.Add(-1)
	}), requests, budget)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		limited.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(make([]byte, bodyBytes)))
			if err != nil {
				errs <- err
				return
			}
			if resp.ProtoMajor != 2 {
				errs <- io.ErrUnexpectedEOF
			}
			resp.Body.Close()
		})
	}
	for arrived.Load() < 20 { // every request reached the server: in progress, or waiting its turn
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := most.Load(); got != want {
		t.Fatalf("%d requests in progress at once, want %d", got, want)
	}
}
