package reconcile

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ottu-recon/ottu-recon/internal/alert"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats"
)

// holdPasses is how many pass intervals an alert posted to Alertmanager
// lives (its endsAt) unless posted again: a pass or two may fail or run late
// without the alert resolving itself.
const holdPasses = 3

// pager returns the Alertmanager pager (ALERTMANAGER_URL), built once and
// kept across passes: it remembers what it posted.
func (m *Main) pager() (*alert.Alertmanager, error) {
	if len(m.Config.AlertmanagerURLs) == 0 {
		return nil, nil
	}
	m.pagerOnce.Do(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		if ca := m.Config.Alertmanager.TLSCAFile; ca != "" {
			pem, err := os.ReadFile(ca)
			pool := x509.NewCertPool()
			if err != nil || !pool.AppendCertsFromPEM(pem) {
				m.pagerErr = fmt.Errorf("ALERTMANAGER_TLS_CA_FILE: no certificate read from %s", ca)
				return
			}
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
		am := &alert.Alertmanager{URLs: m.Config.AlertmanagerURLs, Username: m.Config.Alertmanager.Username,
			Password: m.Config.Alertmanager.Password, BearerToken: m.Config.Alertmanager.BearerToken, Client: client,
			ConsoleURL: m.Config.Console.URL, Hold: holdPasses * m.passInterval()}
		if m.conn != nil {
			am.Posted = nats.AlertsBucket(m.conn, m.Config.Stream.Replicas)
		}
		m.pagerAM = am
		m.pagerMetrics = newPagerMetrics(m.Registry)
	})
	return m.pagerAM, m.pagerErr
}

// passInterval is the time between two scheduled passes (RECON_SCHEDULE),
// at least a minute.
func (m *Main) passInterval() time.Duration {
	sched, err := cronParser.Parse(m.Config.Schedule)
	if err != nil {
		return 5 * time.Minute
	}
	next := sched.Next(m.Now())
	return max(sched.Next(next).Sub(next), time.Minute)
}

// registerSchedule exports when the next scheduled pass is due and the
// schedule's interval, so that an alerting rule can tell that passes stopped
// without knowing RECON_SCHEDULE (deploy/prometheus).
func (m *Main) registerSchedule() {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ottu_reconcile_next_pass_timestamp_seconds",
			Help: "When the next scheduled pass is due (Unix seconds), by RECON_SCHEDULE."},
			func() float64 {
				sched, err := cronParser.Parse(m.Config.Schedule)
				if err != nil {
					return 0
				}
				return float64(sched.Next(m.Now()).Unix())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ottu_reconcile_pass_interval_seconds",
			Help: "Time between two scheduled passes (RECON_SCHEDULE)."},
			func() float64 { return m.passInterval().Seconds() }),
	)
}

// repost keeps the alerts alive when a pass could not tell which fire: an
// outage of the store never reads as "everything resolved".
func (m *Main) repost(ctx context.Context, passErr error) {
	am, err := m.pager()
	if am == nil || err != nil || errors.Is(passErr, nats.ErrLeaseLost) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := am.Repost(ctx, m.Now()); err != nil {
		m.pagerMetrics.failures.Inc()
		log := m.component("alertmanager")
		log.Warn().Err(err).Msg("alerts not posted again after a failed pass; the next pass tries")
	}
}

type pagerMetrics struct {
	firing, owed prometheus.Gauge
	failures     prometheus.Counter
}

func newPagerMetrics(reg prometheus.Registerer) *pagerMetrics {
	f := promauto.With(reg)
	gauge := func(name, help string) prometheus.Gauge {
		return f.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	return &pagerMetrics{
		firing: gauge("ottu_reconcile_alertmanager_firing", "Findings an Alertmanager took as firing at the last pass."),
		owed:   gauge("ottu_reconcile_alertmanager_owed", "Resolved notifications no Alertmanager took yet (posted again every pass)."),
		failures: f.NewCounter(prometheus.CounterOpts{Name: "ottu_reconcile_alertmanager_failures_total",
			Help: "Passes whose posting to Alertmanager failed, in part or whole (retried at the next pass)."}),
	}
}

func (p *pagerMetrics) observe(r ledger.Run) {
	p.firing.Set(float64(r.Paged))
	p.owed.Set(float64(r.PagesOwed))
}
