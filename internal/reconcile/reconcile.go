// Package reconcile is the reconcile daemon and its one-shot commands: it
// stores every webhook from JetStream in ClickHouse exactly once, runs the
// reconciliation pass on a schedule (or once, RunOnce), and prints reports
// (Report). Its configuration comes from the environment (LoadConfig);
// cmd/reconcile wires it.
package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/alert"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/httpserver"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats"
)

// Main is the reconcile daemon, as a value tests can start and stop.
type Main struct {
	Config   Config
	Logger   zerolog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time

	// RetryMin is the first back-off while a dependency is unreachable at
	// start (doubling to 30s); default 500ms.
	RetryMin time.Duration

	db          *clickhouse.DB
	dbOpen      bool
	ready       atomic.Bool
	readyCh     chan struct{}
	conn        *nats.Conn
	lease       *nats.Lease
	consumer    *nats.Consumer
	http        *httpserver.Server
	console     *httpserver.Server // RECON_CONSOLE_LISTEN
	consoleStop context.CancelFunc
	cron        *cron.Cron
	passes      *passMetrics

	depRetries   *prometheus.CounterVec
	parentErrors prometheus.Counter

	pagerOnce    sync.Once
	pagerAM      *alert.Alertmanager // kept across passes: what it posted
	pagerErr     error
	pagerMetrics *pagerMetrics
	inquirerOnce sync.Once
	inquirer     *inquirer         // kept across passes: Ottu's overall rate, a 429's pause, the circuit
	alertParts   ledger.AlertParts // kept across passes: how many findings the receiver takes at once

	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewMain returns a reconcile daemon for cfg.
func NewMain(cfg Config, logger zerolog.Logger) *Main {
	m := &Main{Config: cfg, Logger: logger, Registry: prometheus.NewRegistry(), Now: time.Now}
	m.db = &clickhouse.DB{Addrs: cfg.ClickHouseAddrs, Database: cfg.ClickHouseDatabase,
		Username: cfg.ClickHouseUsername, Password: cfg.ClickHousePassword, TLS: cfg.ClickHouseTLS, TLSCAFile: cfg.ClickHouseTLSCA, Cluster: cfg.ClickHouseCluster,
		InsertQuorum: cfg.InsertQuorum}
	return m
}

func (m *Main) component(name string) zerolog.Logger {
	return m.Logger.With().Str("component", name).Logger()
}

// Open starts the daemon and returns once the health server listens. Only a
// configuration error (a bad schedule or address) makes it fail: ClickHouse
// and NATS are connected to in the background, with back-off, for as long as
// it takes (after a host reboot, they may come up after reconcile). Until
// both are there, /readyz answers 503 and scheduled passes are skipped.
func (m *Main) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = errors.Join(err, m.Close(cctx))
		}
	}()
	m.readyCh = make(chan struct{})
	m.conn = &nats.Conn{URL: m.Config.NATSURL, Name: "ottu-recon-reconcile", Auth: m.Config.NATSAuth, Logger: m.component("nats")}
	if err := m.conn.Open(); err != nil { // does not wait for the server
		return err
	}
	writer := &clickhouse.Writer{DB: m.db}
	stored := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ottu_reconcile_stored_total",
		Help: "Deliveries stored in ClickHouse by kind (payment, operation, unreadable, poison, rejected) and duplicates skipped."}, []string{"kind"})
	m.depRetries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ottu_reconcile_dependency_retries_total",
		Help: "Failed attempts to reach a dependency at start (clickhouse, nats); retried with back-off."}, []string{"dependency"})
	m.parentErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_reconcile_parent_errors_total",
		Help: "Parents a pass could not evaluate (logged; retried by the next pass)."})
	m.Registry.MustRegister(stored, m.depRetries, m.parentErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	storeLog := m.component("store")
	consumerMetrics := nats.NewConsumerMetrics(m.Registry)
	m.consumer = &nats.Consumer{
		Conn: m.conn, Stream: m.Config.Stream, Durable: m.Config.Consumer,
		BatchSize: m.Config.BatchSize, MaxWait: m.Config.BatchWait,
		MaxBytes: m.Config.BatchMaxBytes, MaxMessageBytes: events.MaxBodyBytes + 64<<10, // ingest's largest body and its headers
		Metrics: consumerMetrics,
		OnRecreate: func(what string) {
			storeLog.Warn().Str("created", what).Msg("the store consumer's " + what + " was gone from NATS (rebuilt empty?); created it again")
		},
		Handle: func(ctx context.Context, msgs []events.StreamMessage, maybeStored []bool) ([]bool, error) {
			res, err := writer.Write(ctx, msgs, maybeStored)
			if err != nil {
				return nil, err
			}
			stored.WithLabelValues("payment").Add(float64(res.Payments))
			stored.WithLabelValues("operation").Add(float64(res.Operations))
			stored.WithLabelValues("rejected").Add(float64(res.Rejected))
			stored.WithLabelValues("unreadable").Add(float64(res.Unreadable))
			stored.WithLabelValues("poison").Add(float64(res.Poisoned))
			stored.WithLabelValues("duplicate").Add(float64(res.Duplicates))
			storeLog.Debug().Int("batch", len(msgs)).Int("payments", res.Payments).Int("operations", res.Operations).
				Int("unreadable", res.Unreadable).Int("poisoned", res.Poisoned).
				Int("rejected", res.Rejected).Int("duplicates", res.Duplicates).Msg("batch stored")
			terminate := make([]bool, len(msgs))
			for _, r := range res.Refused {
				terminate[r.Index] = true
				storeLog.Error().Uint64("stream_seq", msgs[r.Index].StreamSeq).Str("delivery_id", msgs[r.Index].ID).Str("reason", r.Reason).
					Msg("delivery refused by ClickHouse kept whole in unreadable_webhooks and terminated; raised as UNREADABLE_WEBHOOK")
			}
			for i, msg := range msgs {
				if !terminate[i] {
					logStoredMessage(storeLog, msg)
				}
			}
			return terminate, nil
		},
		OnError: func(err error, attempt int) {
			ev := storeLog.Warn()
			if attempt > 3 {
				ev = storeLog.Error()
			}
			ev.Err(err).Int("attempt", attempt).Msg("store batch failed; retrying, nothing acked")
		},
	}

	// The pass lease: whichever replica holds it runs the scheduled passes.
	host, _ := os.Hostname()
	leaseHeld := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ottu_reconcile_lease_held",
		Help: "1 while this replica holds the pass lease (and runs the scheduled passes)."})
	takeovers := prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_reconcile_lease_takeovers_total",
		Help: "Times this replica took the pass lease."})
	m.Registry.MustRegister(leaseHeld, takeovers)
	leaseLog := m.component("lease")
	m.lease = &nats.Lease{Conn: m.conn, Holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), newID()), TTL: m.Config.LeaseTTL,
		Replicas: m.Config.Stream.Replicas, OnChange: func(held bool) {
			if held {
				leaseHeld.Set(1)
				takeovers.Inc()
				leaseLog.Info().Msg("took the pass lease: this replica runs the scheduled passes")
				return
			}
			leaseHeld.Set(0)
			leaseLog.Info().Msg("pass lease not held: another replica runs the scheduled passes")
		},
		OnError: func(err error) {
			leaseLog.Warn().Err(err).Msg("pass lease not taken or kept: scheduled passes wait for it")
		},
		OnRecreate: func() {
			consumerMetrics.Recreated.WithLabelValues("lease_bucket").Inc()
			leaseLog.Warn().Msg("the lease bucket was gone from NATS (rebuilt empty?); created it again")
		},
		OnTTL: func(ttl time.Duration) {
			leaseLog.Warn().Dur("bucket_ttl", ttl).Dur("RECON_LEASE_TTL", m.Config.LeaseTTL).
				Msg("the lease bucket has another TTL than RECON_LEASE_TTL; the bucket's is used, so that every replica counts alike")
		}}

	// The schedule: UTC, never two passes at once, a panic is a failed pass.
	m.passes = newPassMetrics(m.Registry)
	m.registerSchedule()
	cronLog := cronLogger{m.component("cron")}
	m.cron = cron.New(cron.WithParser(cronParser), cron.WithLocation(time.UTC), cron.WithLogger(cronLog),
		cron.WithChain(cron.Recover(cronLog), cron.SkipIfStillRunning(cronLog)))
	if _, err := m.cron.AddFunc(m.Config.Schedule, m.scheduledPass); err != nil {
		return fmt.Errorf("schedule %q: %w", m.Config.Schedule, err)
	}
	m.http = &httpserver.Server{Addr: m.Config.Listen, Ready: m.Ready, ShowErrors: true, Gatherer: m.Registry}
	if err := m.http.Open(); err != nil {
		return err
	}
	if err := m.openConsole(); err != nil {
		return err
	}

	m.runCtx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	go m.run(m.runCtx)
	m.cron.Start()
	return nil
}

// logStoredMessage logs what became of a message that was not stored as an
// ordinary webhook.
func logStoredMessage(log zerolog.Logger, msg events.StreamMessage) {
	switch {
	case msg.Invalid != "":
		log.Warn().Uint64("stream_seq", msg.StreamSeq).Str("reason", msg.Invalid).
			Msg("message that is not an envelope kept in rejected_webhooks and terminated")
	case msg.Unreadable != nil:
		log.Warn().Uint64("stream_seq", msg.StreamSeq).Str("delivery_id", msg.ID).
			Str("field", msg.Unreadable.Field).Str("reason", msg.Unreadable.Reason).
			Msg("authentic webhook with an unreadable value kept in unreadable_webhooks; raised as UNREADABLE_WEBHOOK")
	}
}

// run connects to ClickHouse (migrating the schema) and to the stream,
// retrying with back-off until both answer, then consumes until ctx ends.
func (m *Main) run(ctx context.Context) {
	defer m.wg.Done()
	log := m.component("start")
	wait := cmp.Or(m.RetryMin, 500*time.Millisecond)
	for attempt := 1; ; attempt++ {
		dep, err := m.connect(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		m.depRetries.WithLabelValues(dep).Inc()
		ev := log.Debug()
		if attempt == 1 || attempt%10 == 0 {
			ev = log.Warn()
		}
		ev.Err(err).Str("dependency", dep).Int("attempt", attempt).Dur("retry_in", wait).
			Msg("dependency not reachable; not ready, retrying")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
	m.ready.Store(true)
	close(m.readyCh)
	log.Info().Msg("connected to ClickHouse and the stream; storing webhooks")
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.backfill(ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.lease.Run(ctx)
	}()
	if err := m.consumer.Run(ctx); err != nil {
		storeLog := m.component("store")
		storeLog.Error().Err(err).Msg("consumer stopped")
	}
}

// connect does what the daemon needs of its dependencies before it works;
// it is called again until it succeeds, and never redoes a step that did.
func (m *Main) connect(ctx context.Context) (dependency string, err error) {
	if !m.dbOpen {
		if _, err := m.db.Migrate(ctx); err != nil {
			return "clickhouse", err
		}
		if err := m.db.Open(ctx); err != nil {
			_ = m.db.Close()
			return "clickhouse", err
		}
		m.dbOpen = true
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.consumer.Open(octx); err != nil {
		return "nats", err
	}
	return "", nil
}

// cronLogger adapts zerolog to cron's Logger.
type cronLogger struct{ l zerolog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug().Fields(kv).Msg(msg) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error().Err(err).Fields(kv).Msg(msg)
}

// Ready reports whether NATS and ClickHouse are both reachable.
func (m *Main) Ready() error {
	if !m.ready.Load() {
		return errors.New("starting: ClickHouse or the stream not reachable yet")
	}
	if m.conn == nil || !m.conn.Connected() {
		return errors.New("nats not connected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.db.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	return nil
}

// URL is the health server's base URL.
func (m *Main) URL() string { return m.http.URL() }

// Close stops intake, finishes the batch in hand, then closes connections.
func (m *Main) Close(ctx context.Context) error {
	var errs []error
	if m.consoleStop != nil {
		m.consoleStop()
	}
	if m.console != nil {
		errs = append(errs, m.console.Close(ctx))
	}
	if m.http != nil {
		errs = append(errs, m.http.Close(ctx))
	}
	if m.cron != nil {
		// No new passes; wait for a running one, within the shutdown bound.
		select {
		case <-m.cron.Stop().Done():
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("wait for the running pass: %w", ctx.Err()))
		}
	}
	if m.cancel != nil {
		m.cancel()
		done := make(chan struct{})
		go func() { m.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("wait for consumer: %w", ctx.Err()))
		}
	}
	if m.conn != nil {
		errs = append(errs, m.conn.Close(ctx))
	}
	errs = append(errs, m.db.Close())
	return errors.Join(errs...)
}
