package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/ottuapi"
)

// inquirer asks Ottu's Payment Status Query about a parent within Ottu's
// throttle, verifies the answer's signature with the webhook keys, stores the
// answer as a delivery (source inquiry) and records the question and what it
// said (ottu_inquiries), where the next evaluation reads it. The per-parent
// throttle (10 minutes after creation, 3 a day, 30 minutes apart) is the
// store's choice of candidates; the overall one (30 a minute) and a 429's
// pause are kept here.
type inquirer struct {
	client  *ottuapi.Client
	keys    [][]byte
	store   *clickhouse.Store
	writer  *clickhouse.Writer
	log     zerolog.Logger
	limiter *rate.Limiter
	now     func() time.Time
	calls   *prometheus.CounterVec

	mu          sync.Mutex
	pausedUntil time.Time
}

var _ ledger.Inquirer = (*inquirer)(nil)

func newInquirer(client *ottuapi.Client, keys [][]byte, db *clickhouse.DB, log zerolog.Logger, reg prometheus.Registerer) *inquirer {
	q := &inquirer{client: client, keys: keys, store: &clickhouse.Store{DB: db}, writer: &clickhouse.Writer{DB: db}, log: log,
		limiter: rate.NewLimiter(rate.Every(2*time.Second), 30), now: time.Now,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ottu_reconcile_inquiries_total",
			Help: "Questions to Ottu's Payment Status Query by outcome (found, not_found, rate_limited, bad_signature, error)."}, []string{"outcome"})}
	reg.MustRegister(q.calls)
	return q
}

func (q *inquirer) Inquire(ctx context.Context, session, runID string) error {
	now := q.now().UTC()
	q.mu.Lock()
	paused := now.Before(q.pausedUntil)
	q.mu.Unlock()
	if paused || !q.limiter.AllowN(now, 1) {
		return ledger.ErrInquiryPaused
	}
	body, status, err := q.client.Inquire(ctx, session)
	rec := clickhouse.Inquiry{SessionID: session, AskedAt: now, Status: status, RunID: runID}
	var limited *ottuapi.RateLimitedError
	outcome := "found"
	switch {
	case errors.As(err, &limited):
		q.mu.Lock()
		q.pausedUntil = now.Add(limited.RetryAfter)
		q.mu.Unlock()
		outcome, rec.Error = "rate_limited", err.Error()
		err = ledger.ErrInquiryPaused
	case errors.Is(err, ottuapi.ErrNotFound):
		outcome, err = "not_found", nil
	case err != nil:
		outcome, rec.Error = "error", err.Error()
	default:
		if serr := q.keep(ctx, body, &rec); serr != nil {
			outcome, rec.Error, rec.Status, err = "bad_signature", serr.Error(), 0, serr
		}
	}
	q.calls.WithLabelValues(outcome).Inc()
	q.log.Info().Str("session_id", session).Int("status", status).Str("outcome", outcome).Bool("found", rec.Found).
		Msg("asked Ottu's Payment Status Query")
	if rerr := q.store.RecordInquiry(context.WithoutCancel(ctx), rec); rerr != nil {
		return errors.Join(err, fmt.Errorf("record inquiry: %w", rerr))
	}
	return err
}

// keep verifies Ottu's answer and stores it as a delivery. An answer whose
// signature matches no key is not Ottu's word: it is recorded as an error.
func (q *inquirer) keep(ctx context.Context, body []byte, rec *clickhouse.Inquiry) error {
	if err := events.CheckShape(body); err != nil {
		return err
	}
	m, err := events.ParseObject(body)
	if err != nil {
		return fmt.Errorf("Ottu's answer: %w", err)
	}
	match, err := events.Verify(m, events.Signature(m, ""), q.keys)
	if err != nil {
		return fmt.Errorf("Ottu's answer: %w", err)
	}
	msg := events.StreamMessage{Envelope: events.Envelope{Kind: events.KindPayment, ReceivedAt: rec.AskedAt,
		Scheme: match.Scheme, KeyIndex: match.KeyIndex, Body: body, Source: "inquiry"}}
	wh, derr := events.DecodeObject(m)
	if derr != nil || wh.Payment == nil {
		u := events.Salvage(m, fmt.Errorf("Ottu's answer is not a readable payment: %v", derr))
		msg.Unreadable = &u
	} else {
		msg.Webhook = wh
		rec.Found, rec.State, rec.Children = true, wh.Payment.State, wh.Payment.Transactions
	}
	msg.ID = events.DeliveryID(events.KindPayment, m)
	rec.DeliveryID = msg.ID
	if _, err := q.writer.Write(ctx, []events.StreamMessage{msg}); err != nil {
		return fmt.Errorf("store Ottu's answer: %w", err)
	}
	return nil
}
