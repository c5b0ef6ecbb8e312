// Package ingest is the ingest daemon: it receives Ottu webhooks, verifies
// them and stores every one durably in NATS JetStream (or, while JetStream is
// away, in a local spool it forwards from later) before answering 200. Its
// configuration comes from the environment (LoadConfig); cmd/ingest wires it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/httpserver"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/spool"
	"github.com/ottu-recon/ottu-recon/internal/webhook"
)

// Main is the ingest daemon, as a value tests can start and stop.
type Main struct {
	Config   Config
	Logger   zerolog.Logger
	Registry *prometheus.Registry

	server  *nats.Server
	conn    *nats.Conn
	spool   *spool.Spool
	durable *spool.Durable
	http    *httpserver.Server
	admin   *httpserver.Server // INGEST_ADMIN_LISTEN
}

// NewMain returns an ingest daemon for cfg.
func NewMain(cfg Config, logger zerolog.Logger) *Main {
	return &Main{Config: cfg, Logger: logger, Registry: prometheus.NewRegistry()}
}

func (m *Main) component(name string) zerolog.Logger {
	return m.Logger.With().Str("component", name).Logger()
}

// Open starts everything; it returns once the HTTP listener is bound.
func (m *Main) Open() (err error) {
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = errors.Join(err, m.Close(ctx))
		}
	}()
	cfg := m.Config
	natsURL := cfg.NATSURL
	if cfg.NATSEmbedded {
		m.server = &nats.Server{Listen: cfg.NATSListen, StoreDir: cfg.NATSStoreDir, SyncAlways: cfg.NATSSyncAlways,
			User: cfg.NATSAuth.User, Password: cfg.NATSAuth.Password, Token: cfg.NATSAuth.Token,
			Logger: m.component("nats-server")}
		if err := m.server.Open(); err != nil {
			return err
		}
		natsURL = m.server.ClientURL()
	}
	m.conn = &nats.Conn{URL: natsURL, Name: "ottu-recon-ingest", Auth: cfg.NATSAuth, ReconnectWait: 250 * time.Millisecond, Logger: m.component("nats")}
	if err := m.conn.Open(); err != nil {
		return err
	}
	if m.spool, err = spool.Open(cfg.SpoolDir, cfg.SpoolMaxBytes); err != nil {
		return err
	}
	if n := m.spool.Len(); n > 0 {
		m.Logger.Warn().Int("backlog", n).Str("dir", cfg.SpoolDir).Msg("spool holds webhooks from an earlier run; forwarding them first")
	}
	forwarded := prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_ingest_spool_forwarded_total", Help: "Webhooks forwarded from the local spool to the stream."})
	quarantined := prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_ingest_spool_quarantined_total", Help: "Spooled webhooks that can never be forwarded (too large for the stream, truncated), set aside in the spool's failed/ folder."})
	skipped := prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_ingest_spool_skipped_total", Help: "Spool entries whose file was gone when forwarded (removed by hand), skipped."})
	readErrors := prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_ingest_spool_forward_failures_total", Help: "Failed attempts to forward a spooled webhook (retried with back-off)."})
	spoolLog := m.component("spool")
	recreated := prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_ingest_nats_recreated_total",
		Help: "Times the stream was found gone (NATS rebuilt with empty storage) and created again."})
	publisher := &nats.Publisher{Conn: m.conn, Stream: cfg.Stream, OnRecreate: func() {
		recreated.Inc()
		m.Logger.Warn().Str("stream", cfg.Stream.Name).Msg("stream was gone from NATS (rebuilt empty?); created it again")
	}}
	if m.conn.Connected() {
		// Create or update the stream now; if that fails it is retried at the
		// first publish, and webhooks are spooled meanwhile.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := publisher.Ensure(ctx); err != nil {
			m.Logger.Warn().Err(err).Msg("stream not ready; will retry at the first publish")
		}
		cancel()
	} else {
		m.Logger.Warn().Str("url", nats.RedactURL(natsURL)).Msg("nats unreachable at start; webhooks are spooled until it is back")
	}
	m.durable = &spool.Durable{
		Next:           publisher,
		Spool:          m.spool,
		PublishTimeout: cfg.PublishTimeout,
		IsPermanent:    func(err error) bool { return errors.Is(err, nats.ErrTooLarge) },
		OnForwarded:    func(events.Envelope, events.PublishResult) { forwarded.Inc() },
		OnForwardError: func(env events.Envelope, err error, outcome spool.Outcome) {
			switch outcome {
			case spool.SetAside:
				quarantined.Inc()
				spoolLog.Error().Err(err).Str("delivery_id", env.ID).Msg("spooled webhook set aside in failed/")
			case spool.Skipped:
				skipped.Inc()
				spoolLog.Error().Err(err).Msg("spool entry gone before it was forwarded; skipped")
			default:
				readErrors.Inc()
				spoolLog.Debug().Err(err).Int("backlog", m.spool.Len()).Msg("forward from spool failed; will retry")
			}
		},
	}
	if err := m.durable.Open(); err != nil {
		return err
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		forwarded, quarantined, skipped, readErrors, recreated,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ottu_ingest_spool_backlog", Help: "Webhooks waiting in the local spool for the stream."},
			func() float64 { return float64(m.spool.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ottu_ingest_spool_bytes", Help: "Size of the local spool backlog."},
			func() float64 { return float64(m.spool.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ottu_ingest_nats_connected", Help: "1 while connected to NATS."},
			func() float64 { return boolFloat(m.conn.Connected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ottu_ingest_ready",
			Help: "1 while a webhook would be stored durably (what /readyz answers)."},
			func() float64 { return boolFloat(m.Ready() == nil) }),
	)
	handler := &webhook.Handler{Keys: cfg.HMACKeys, Publisher: m.durable,
		Logger: m.component("webhook"), Metrics: webhook.NewMetrics(m.Registry)}
	if cfg.RejectedBytesPerMin > 0 {
		handler.KeepBudget = rate.NewLimiter(rate.Limit(float64(cfg.RejectedBytesPerMin)/60), cfg.RejectedBytesPerMin)
	}
	m.http = &httpserver.Server{
		Addr:                 cfg.Listen,
		Routes:               map[string]http.Handler{webhook.Path: handler},
		NoAdmin:              cfg.AdminListen != "",
		Ready:                m.Ready,
		Gatherer:             m.Registry,
		MaxConnections:       cfg.MaxConnections,
		MaxBodyBytesInFlight: cfg.MaxBodyBytes,
		CertFile:             cfg.TLSCertFile,
		KeyFile:              cfg.TLSKeyFile,
	}
	if err := m.http.Open(); err != nil {
		return err
	}
	if cfg.AdminListen != "" {
		m.admin = &httpserver.Server{Addr: cfg.AdminListen, Ready: m.Ready, ShowErrors: true, Gatherer: m.Registry}
		return m.admin.Open()
	}
	return nil
}

// Ready tells whether a webhook would be stored durably now: straight into the
// stream, or into the spool.
func (m *Main) Ready() error {
	if m.conn.Connected() && m.spool.Len() == 0 {
		return nil
	}
	if err := m.spool.CheckWritable(); err != nil {
		return fmt.Errorf("nats unreachable and %w", err)
	}
	return nil
}

// URL is the base URL of the HTTP server.
func (m *Main) URL() string { return m.http.URL() }

// AdminURL is the base URL of the health and metrics server: the admin
// server when INGEST_ADMIN_LISTEN is set, else the webhook server.
// deadcode:keep: tests start ingest on :0 and read back where it listens.
func (m *Main) AdminURL() string {
	if m.admin != nil {
		return m.admin.URL()
	}
	return m.http.URL()
}

// NATSURL is the URL of the embedded NATS server, when there is one.
// deadcode:keep: tests start it on :0 and read back where it listens.
func (m *Main) NATSURL() string {
	if m.server == nil {
		return ""
	}
	return m.server.ClientURL()
}

// Close shuts down in order: stop intake (in-flight requests finish), forward
// the spool while ctx allows, close NATS, stop the embedded server.
func (m *Main) Close(ctx context.Context) error {
	var errs []error
	if m.http != nil {
		errs = append(errs, m.http.Close(ctx))
	}
	if m.admin != nil {
		errs = append(errs, m.admin.Close(ctx))
	}
	if m.durable != nil {
		errs = append(errs, m.durable.Close(ctx))
	}
	if m.spool != nil {
		errs = append(errs, m.spool.Close())
	}
	if m.conn != nil {
		errs = append(errs, m.conn.Close(ctx))
	}
	if m.server != nil {
		m.server.Close()
	}
	return errors.Join(errs...)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
