// Command reconcile stores every webhook from JetStream in ClickHouse and
// reconciles parent payments against their operations on a schedule.
//
//	reconcile serve      the daemon: consume into ClickHouse, run scheduled passes
//	reconcile migrate    create the database if missing, create or upgrade the schema
//	reconcile run-once   one reconciliation pass now (alerts included), then exit
//	reconcile report     print reports to stdout
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/webhook"
)

const usage = `usage: reconcile serve|migrate|run-once|report [flags]

  serve      consume webhooks from JetStream into ClickHouse and run the scheduled pass
  migrate    create the database if missing, then create or upgrade the schema (idempotent)
  run-once   run one reconciliation pass now, alerts included, then exit
  report     print reports (reconcile report -h for its flags)

Configuration comes from environment variables; see README.md.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "reconcile:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, usage)
		if len(args) == 0 {
			return errors.New("a subcommand is required")
		}
		return nil
	}
	cfg, err := LoadConfig(envconfig.OS())
	if err != nil {
		return err
	}
	logger := zerolog.New(os.Stderr).Level(cfg.LogLevel).With().Timestamp().Str("daemon", "reconcile").Logger()
	for _, v := range unknownVars() {
		logger.Warn().Str("variable", v).Msg("unknown variable ignored; a typo?")
	}
	m := NewMain(cfg, logger)
	switch args[0] {
	case "migrate":
		res, err := m.DB().Migrate(ctx)
		if err != nil {
			return err
		}
		logger.Info().Bool("created_database", res.CreatedDatabase).Strs("applied", res.Applied).
			Str("database", cfg.ClickHouseDatabase).Msg("schema up to date")
		return nil
	case "serve":
		if err := m.Open(ctx); err != nil {
			return err
		}
		logger.Info().Str("listen", m.URL()).Str("schedule", cfg.Schedule).Msg("reconcile serving")
		<-ctx.Done()
		logger.Info().Msg("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return m.Close(sctx)
	case "run-once":
		return m.RunOnce(ctx)
	case "report":
		return m.Report(ctx, args[1:], stdout)
	}
	fmt.Fprintln(os.Stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

// Main is the reconcile daemon, as a value tests can start and stop.
type Main struct {
	Config   Config
	Logger   zerolog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time

	db       *clickhouse.DB
	conn     *nats.Conn
	consumer *nats.Consumer
	http     *webhook.Server

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewMain returns a reconcile daemon for cfg.
func NewMain(cfg Config, logger zerolog.Logger) *Main {
	m := &Main{Config: cfg, Logger: logger, Registry: prometheus.NewRegistry(), Now: time.Now}
	m.db = &clickhouse.DB{Addrs: cfg.ClickHouseAddrs, Database: cfg.ClickHouseDatabase,
		Username: cfg.ClickHouseUsername, Password: cfg.ClickHousePassword, Logger: m.component("clickhouse")}
	return m
}

// DB is the ClickHouse database.
func (m *Main) DB() *clickhouse.DB { return m.db }

func (m *Main) component(name string) zerolog.Logger {
	return m.Logger.With().Str("component", name).Logger()
}

// Open migrates the schema, connects, starts the consumer, the schedule and
// the health server.
func (m *Main) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = errors.Join(err, m.Close(cctx))
		}
	}()
	if _, err := m.db.Migrate(ctx); err != nil {
		return err
	}
	if err := m.db.Open(ctx); err != nil {
		return err
	}
	m.conn = &nats.Conn{URL: m.Config.NATSURL, Name: "ottu-recon-reconcile", Logger: m.component("nats")}
	if err := m.conn.Open(); err != nil {
		return err
	}
	writer := &clickhouse.Writer{DB: m.db}
	stored := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ottu_reconcile_stored_total",
		Help: "Deliveries stored in ClickHouse by kind (payment, operation, rejected) and duplicates skipped."}, []string{"kind"})
	m.Registry.MustRegister(stored, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	storeLog := m.component("store")
	m.consumer = &nats.Consumer{
		Conn: m.conn, Stream: m.Config.Stream, Durable: m.Config.Consumer,
		BatchSize: m.Config.BatchSize, MaxWait: m.Config.BatchWait,
		Metrics: nats.NewConsumerMetrics(m.Registry),
		Handle: func(ctx context.Context, msgs []events.StreamMessage) error {
			res, err := writer.Write(ctx, msgs)
			if err != nil {
				return err
			}
			stored.WithLabelValues("payment").Add(float64(res.Payments))
			stored.WithLabelValues("operation").Add(float64(res.Operations))
			stored.WithLabelValues("rejected").Add(float64(res.Rejected))
			stored.WithLabelValues("duplicate").Add(float64(res.Duplicates))
			storeLog.Debug().Int("batch", len(msgs)).Int("payments", res.Payments).Int("operations", res.Operations).
				Int("rejected", res.Rejected).Int("duplicates", res.Duplicates).Msg("batch stored")
			for _, msg := range msgs {
				if msg.Invalid != "" {
					storeLog.Warn().Uint64("stream_seq", msg.StreamSeq).Str("reason", msg.Invalid).
						Msg("unreadable message kept in rejected_webhooks and terminated")
				}
			}
			return nil
		},
		OnError: func(err error, attempt int) {
			ev := storeLog.Warn()
			if attempt > 3 {
				ev = storeLog.Error()
			}
			ev.Err(err).Int("attempt", attempt).Msg("store batch failed; retrying, nothing acked")
		},
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.consumer.Open(octx); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.Background())
	m.cancel = stop
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.consumer.Run(runCtx); err != nil {
			storeLog.Error().Err(err).Msg("consumer stopped")
		}
	}()
	m.http = &webhook.Server{Addr: m.Config.Listen, Ready: m.Ready, Gatherer: m.Registry}
	return m.http.Open()
}

// Ready reports whether NATS and ClickHouse are both reachable.
func (m *Main) Ready() error {
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
	if m.http != nil {
		errs = append(errs, m.http.Close(ctx))
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

// RunOnce runs one reconciliation pass.
func (m *Main) RunOnce(ctx context.Context) error {
	return errors.New("run-once: not implemented yet")
}

// Report prints reports.
func (m *Main) Report(ctx context.Context, args []string, stdout io.Writer) error {
	return errors.New("report: not implemented yet")
}
