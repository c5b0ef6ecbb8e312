// Package nettest gives tests free loopback ports, plain HTTP requests and a
// lock on a resource shared across test packages.
package nettest

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a loopback port nothing listens on (at the time asked).
func FreePort(tb testing.TB) int {
	tb.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(tb))
	n, _ := strconv.Atoi(port)
	return n
}

// FreeAddr returns a loopback address nothing listens on.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Get fetches url and returns the status and body.
func Get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Lock holds an exclusive lock (flock) on the file at path for the rest of
// the test: for tests in several packages that share an outside resource
// (the ClickHouse cluster, CLICKHOUSE_CLUSTER_LOCK). An empty path locks
// nothing.
func Lock(tb testing.TB, path string) {
	tb.Helper()
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() })
}

// Metric scrapes the Prometheus text at url and returns the value of series,
// written as the exposition writes it (a name, or a name with its labels);
// it fails the test when the series is absent.
func Metric(tb testing.TB, url, series string) float64 {
	tb.Helper()
	_, body := Get(tb, url)
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	tb.Fatalf("%s not among the metrics at %s", series, url)
	return 0
}

// WaitFor polls cond until it holds, and fails the test when it still does
// not after timeout: the one way tests wait for another process or
// goroutine, never a fixed sleep.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CloseAtEnd closes a daemon when the test ends, within timeout, and fails
// the test when it does not close cleanly.
func CloseAtEnd(tb testing.TB, timeout time.Duration, close func(context.Context) error) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := close(ctx); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
}
