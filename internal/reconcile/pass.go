package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/alert"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/console"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/ottuapi"
	"github.com/ottu-recon/ottu-recon/internal/report"
)

// scheduledPass is the cron job: one pass with a timeout derived from the
// daemon's context. A failed pass is logged and counted, never fatal.
func (m *Main) scheduledPass() {
	if !m.ready.Load() {
		log := m.component("reconciler")
		log.Warn().Msg("pass skipped: ClickHouse or the stream not reachable yet")
		return
	}
	if held, _ := m.lease.Held(); !held {
		return // another replica runs the passes
	}
	ctx, cancel := context.WithTimeout(m.runCtx, m.Config.PassTimeout)
	defer cancel()
	_, _ = m.pass(ctx, m.lease.Check) // pass logs and counts a failure; the next pass retries
}

// Pass runs one reconciliation pass now, whoever holds the pass lease (as
// run-once does), logs its report and counts it.
func (m *Main) Pass(ctx context.Context) (ledger.Run, error) { return m.pass(ctx, nil) }

// pass runs a pass; guard, if set, is asked before every write and alert.
func (m *Main) pass(ctx context.Context, guard func() error) (ledger.Run, error) {
	log := m.component("reconciler")
	if m.readyCh != nil && !m.ready.Load() {
		return ledger.Run{}, errors.New("not connected to ClickHouse and the stream yet")
	}
	start := time.Now()
	r := m.reconciler()
	r.Guard = guard
	rep, err := r.Run(ctx)
	if m.passes != nil {
		m.passes.observe(rep, err, time.Since(start))
		if err == nil {
			m.observeCoverage(ctx, log)
		}
	}
	if err != nil {
		m.repost(ctx, err)
	} else if m.pagerMetrics != nil {
		m.pagerMetrics.observe(rep)
		if strings.Contains(rep.AlertError, "alertmanager:") {
			m.pagerMetrics.failures.Inc()
		}
	}
	ev := log.Info()
	if err != nil {
		ev = log.Error().Err(err)
	}
	if rep.AlertError != "" {
		ev = ev.Str("alert_error", rep.AlertError)
	}
	if rep.InquiryError != "" {
		ev = ev.Str("inquiry_error", rep.InquiryError)
	}
	ev.Str("run_id", rep.ID).Bool("full", rep.Full).Int("parents", rep.ParentsEvaluated).Int("raised", rep.Raised).
		Int("resolved", rep.Resolved).Int("open", rep.Open).Int("alerted", rep.Alerted).Int("alerts_pending", rep.AlertsPending).
		Int("alerts_parked", rep.AlertsParked).Int("inquiries", rep.Inquiries).Int("inquiries_unanswered", rep.InquiryErrors).
		Dur("took", time.Since(start)).Msg("reconciliation pass")
	return rep, err
}

func (m *Main) reconciler() *ledger.Reconciler {
	r := &ledger.Reconciler{
		Store: &clickhouse.Store{DB: m.db, Saved: func(from, to uint64) {
			// Every replica's console reads the versions at once.
			if err := m.changes().Publish(console.Change{From: from, To: to}.Encode()); err != nil {
				log := m.component("console")
				log.Debug().Err(err).Msg("the consoles were not told of a pass's findings; they read them at their next full read")
			}
		}},
		Config: ledger.Config{Grace: m.Config.Grace, OrderGrace: m.Config.OrderGrace, OrderWatch: m.Config.OrderWatch,
			StaleAuthorization: m.Config.StaleAuthorization,
			StuckRefund:        m.Config.StuckRefund, Live: m.Config.Environment == "live"},
		Now:       m.Now,
		FullEvery: m.Config.FullEvery,
		Parts:     &m.alertParts,
		OnParentError: func(session string, err error) {
			if m.parentErrors != nil {
				m.parentErrors.Inc()
			}
			log := m.component("reconciler")
			log.Error().Err(err).Str("session_id", session).
				Msg("parent not evaluated; its findings stay as they were, the next pass retries it")
		},
	}
	if m.Config.AlertURL != "" {
		r.Notifier = &alert.Webhook{URL: m.Config.AlertURL, HMACKey: []byte(m.Config.AlertHMACKey), ConsoleURL: m.Config.Console.URL}
	}
	if m.conn != nil {
		r.Publisher = findingsPublisher{&nats.FindingsPublisher{Conn: m.conn, Replicas: m.Config.Stream.Replicas}, m.Config.Console.URL}
	}
	if am, err := m.pager(); err != nil {
		log := m.component("alertmanager")
		log.Error().Err(err).Msg("findings not posted to Alertmanager")
	} else if am != nil {
		r.Pager = am
	}
	if m.Config.OttuAPIURL != "" {
		m.inquirerOnce.Do(func() {
			var shared *nats.SharedRate
			if m.conn != nil {
				shared = &nats.SharedRate{Conn: m.conn, Key: psqRateKey, Limit: ledger.OttuThrottle.PerMinute,
					Window: time.Minute, Replicas: m.Config.Stream.Replicas}
			}
			m.inquirer = newInquirer(&ottuapi.Client{URL: m.Config.OttuAPIURL, APIKey: m.Config.OttuAPIKey},
				m.Config.HMACKeys, m.db, shared, m.component("ottu-api"), m.Registry)
			m.inquirer.now = func() time.Time { return m.Now() } // the pass's clock: its throttle reads the questions' times
		})
		r.Inquirer = m.inquirer
	}
	return r
}

// findingsPublisher announces findings on NATS in the alert's JSON format.
type findingsPublisher struct {
	p          *nats.FindingsPublisher
	consoleURL string
}

func (f findingsPublisher) PublishFindings(ctx context.Context, a ledger.Alert) error {
	body, err := alert.Encode(a, f.consoleURL)
	if err != nil {
		return err
	}
	return f.p.Publish(ctx, alert.ID(a), body) // the same id for the same finding versions: the stream drops a copy
}

type passMetrics struct {
	passes   *prometheus.CounterVec
	seconds  prometheus.Histogram
	open     prometheus.Gauge
	raised   prometheus.Counter
	resolved prometheus.Counter
	alertErr prometheus.Counter
	parents  prometheus.Gauge
	parked   prometheus.Gauge
	coverage *prometheus.GaugeVec
	success  prometheus.Gauge
}

// newID returns 8 random hex characters.
func newID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newPassMetrics(reg prometheus.Registerer) *passMetrics {
	f := promauto.With(reg)
	gauge := func(name, help string) prometheus.Gauge {
		return f.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	counter := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	p := &passMetrics{
		passes: f.NewCounterVec(prometheus.CounterOpts{Name: "ottu_reconcile_passes_total",
			Help: "Reconciliation passes by result (ok, error)."}, []string{"result"}),
		seconds: f.NewHistogram(prometheus.HistogramOpts{Name: "ottu_reconcile_pass_seconds",
			Help: "Duration of a reconciliation pass.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}),
		open:     gauge("ottu_reconcile_findings_open", "Open findings after the last pass."),
		raised:   counter("ottu_reconcile_findings_raised_total", "Findings raised."),
		resolved: counter("ottu_reconcile_findings_resolved_total", "Findings resolved."),
		alertErr: counter("ottu_reconcile_alert_failures_total",
			"Passes whose alert or findings announcement failed (retried at the next pass)."),
		parents: gauge("ottu_reconcile_parents_evaluated", "Parents evaluated by the last pass."),
		parked: gauge("ottu_reconcile_alerts_parked",
			"Open findings the alert receiver refused on their own, waiting out their back-off (last pass)."),
		success: gauge("ottu_reconcile_last_success_timestamp_seconds",
			"When the last reconciliation pass that succeeded ended (Unix seconds)."),
		coverage: f.NewGaugeVec(prometheus.GaugeOpts{Name: "ottu_reconcile_coverage",
			Help: "Of the merchant orders and parents expected over the last RECON_ORDER_WATCH (the coverage view's days), " +
				"how many (count: expected, accounted, recovered, unknown), after the last pass."}, []string{"count"}),
	}
	for _, result := range []string{"ok", "error"} { // both series exist from the start: rate() sees the first failure
		p.passes.WithLabelValues(result)
	}
	return p
}

func (p *passMetrics) observe(r ledger.Run, err error, took time.Duration) {
	if err != nil {
		p.passes.WithLabelValues("error").Inc()
		return
	}
	p.passes.WithLabelValues("ok").Inc()
	p.success.SetToCurrentTime()
	p.seconds.Observe(took.Seconds())
	p.open.Set(float64(r.Open))
	p.raised.Add(float64(r.Raised))
	p.resolved.Add(float64(r.Resolved))
	p.parents.Set(float64(r.ParentsEvaluated))
	p.parked.Set(float64(r.AlertsParked))
	if r.AlertError != "" {
		p.alertErr.Inc()
	}
}

// RunOnce migrates, runs one pass (alerts included) and returns its error:
// only a failed pass is an error, not a failed alert.
func (m *Main) RunOnce(ctx context.Context) error {
	if _, err := m.Migrate(ctx); err != nil {
		return err
	}
	if err := m.db.Open(ctx); err != nil {
		return err
	}
	defer m.db.Close()
	conn := &nats.Conn{URL: m.Config.NATSURL, Name: "ottu-recon-run-once", Auth: m.Config.NATSAuth, Logger: m.component("nats")}
	if err := conn.Open(); err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	m.conn = conn
	if !conn.Connected() {
		m.Logger.Warn().Str("url", nats.RedactURL(m.Config.NATSURL)).Msg("nats unreachable: new findings are not announced on recon.findings this time")
		m.conn = nil
	}
	pctx, cancel := context.WithTimeout(ctx, m.Config.PassTimeout)
	defer cancel()
	_, err := m.Pass(pctx)
	return err
}

// observeCoverage sets the coverage metric from the coverage of the days
// the sweep watches; a failure is logged, never the pass's.
func (m *Main) observeCoverage(ctx context.Context, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	days, err := (&clickhouse.Store{DB: m.db}).Coverage(ctx, m.Now().Add(-m.Config.OrderWatch))
	if err != nil {
		log.Warn().Err(err).Msg("coverage not measured this pass")
		return
	}
	var total report.Coverage
	for _, d := range days {
		total.Expected, total.Accounted = total.Expected+d.Expected, total.Accounted+d.Accounted
		total.Recovered, total.Unknown = total.Recovered+d.Recovered, total.Unknown+d.Unknown
	}
	for label, v := range map[string]uint64{"expected": total.Expected, "accounted": total.Accounted,
		"recovered": total.Recovered, "unknown": total.Unknown} {
		m.passes.coverage.WithLabelValues(label).Set(float64(v))
	}
}
