// Package httpserver is the HTTP plumbing both daemons share: a server with
// /healthz, /readyz and /metrics, the routes a daemon adds (ingest's webhook
// endpoint), limits that protect them from slow or idle clients, TLS, and the
// probe the daemons' healthcheck subcommand runs.
package httpserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is an HTTP server for a daemon's routes and/or /healthz, /readyz
// and /metrics. Set the fields, Open, then Close.
type Server struct {
	Addr string // listen address; ":0" picks a free port
	// Routes are the daemon's own endpoints, by pattern (ingest's webhook);
	// none serves only the health and metrics endpoints (reconcile, and
	// ingest's admin port). MaxConnections and MaxBodyBytesInFlight bound them.
	Routes map[string]http.Handler
	// NoAdmin leaves out /healthz, /readyz and /metrics (they are served on
	// another port: INGEST_ADMIN_LISTEN).
	NoAdmin bool
	// Ready reports whether the daemon can work now; /readyz answers 503
	// otherwise, with the error's text only when ShowErrors is set (never on
	// a port the world reaches).
	Ready      func() error
	ShowErrors bool
	Gatherer   prometheus.Gatherer
	// MaxConnections caps the requests in progress at once, and the
	// connections held open (0: no cap). Idle keep-alive connections do not
	// hold a slot when a new client needs one (they are closed); over HTTP/2
	// it also caps a connection's concurrent streams.
	MaxConnections int
	// MaxBodyBytesInFlight caps the bytes of request bodies being read at
	// once (default 64 MiB); a request waits for its share.
	MaxBodyBytesInFlight int64
	// CertFile and KeyFile, when set, make the server speak HTTPS.
	CertFile, KeyFile string

	ln     net.Listener
	srv    *http.Server
	err    chan error
	closed bool
}

// Open binds the listener and starts serving; it returns once the address is bound.
func (s *Server) Open() error {
	mux := http.NewServeMux()
	for pattern, h := range s.Routes {
		if s.MaxConnections > 0 {
			h = limitRequests(h, s.MaxConnections, cmp.Or(s.MaxBodyBytesInFlight, 64<<20))
		}
		mux.Handle(pattern, h)
	}
	if !s.NoAdmin {
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
		})
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if err := s.Ready(); err != nil {
				body := map[string]string{"status": "not ready"}
				if s.ShowErrors {
					body["error"] = err.Error()
				}
				writeJSON(w, http.StatusServiceUnavailable, body)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		})
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return errors.New("webhook server: set both the certificate and the key file, or neither")
	}

	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.Addr, err)
	}
	var limiter *connLimiter
	if s.MaxConnections > 0 {
		limiter = newConnLimiter(ln, s.MaxConnections)
		ln = limiter
	}
	s.ln = ln
	// Timeouts against slow clients; Ottu itself waits 15 s by default (§5).
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	if limiter != nil {
		s.srv.ConnState = limiter.track
		s.srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: min(s.MaxConnections, 250)}
	}
	s.err = make(chan error, 1)
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		go func() { s.err <- s.srv.ServeTLS(ln, "", "") }()
		return nil
	}
	go func() { s.err <- s.srv.Serve(ln) }()
	return nil
}

// URL is the server's base URL.
func (s *Server) URL() string {
	if s.CertFile != "" {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// Close stops accepting and waits for in-flight requests, bounded by ctx.
// Closing again does nothing.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil || s.closed {
		return nil
	}
	s.closed = true
	err := s.srv.Shutdown(ctx)
	if serr := <-s.err; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	return nil
}

// Probe GETs url and fails unless it answers 200: the daemons' `healthcheck`
// subcommand, for container health checks in images without curl.
func Probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %d", url, resp.StatusCode)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}
