package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/ottuapi"
)

// inquirer asks Ottu's Payment Status Query about a parent within Ottu's
// throttle, and keeps only a verdict (docs/dependability.md, "Ottu's API"):
// an answer that verifies with the webhook keys, is about the payment asked
// (its signed session_id, order_no and reference_number agree with ours) and
// can be read is stored as a delivery (source inquiry) and recorded as
// found; Ottu's documented 404 is recorded as not found; anything else is
// recorded with no verdict and its reason (ottu_inquiries), where the rules
// never read it. The per-parent throttle (10 minutes after creation, 3 a
// day, 30 minutes apart) is the store's choice of candidates; the overall
// one (30 a minute) and a 429's pause are shared by every replica through
// NATS (shared), with a per-process limiter when NATS cannot be reached.
// Repeated failures to get an answer open a circuit: no question for a while.
type inquirer struct {
	client  *ottuapi.Client
	keys    [][]byte
	store   *clickhouse.Store
	writer  *clickhouse.Writer
	log     zerolog.Logger
	shared  *nats.SharedRate // nil: local only
	local   *rate.Limiter
	breaker *gobreaker.CircuitBreaker[answer]
	now     func() time.Time

	calls   *prometheus.CounterVec
	circuit prometheus.Gauge

	mu          sync.Mutex
	pausedUntil time.Time // local pause (a 429 while NATS is away)
}

// answer is what one call to Ottu returned.
type answer struct {
	body   []byte
	status int
	err    error // Ottu's own answer that is not a record (404, 429, 400...)
}

var _ ledger.Inquirer = (*inquirer)(nil)

// Ottu's overall limit on the Payment Status Query (docs/ottu-webhooks.md §7.1).
const (
	psqRateKey      = "ottu-payment-status-query" // its entry in nats.LimitsBucket
	circuitFailures = 3                           // consecutive questions with no answer that open the circuit
	circuitOpenFor  = 5 * time.Minute             // then one question is tried again
)

func newInquirer(client *ottuapi.Client, keys [][]byte, db *clickhouse.DB, shared *nats.SharedRate, log zerolog.Logger,
	reg prometheus.Registerer) *inquirer {
	q := &inquirer{client: client, keys: keys, store: &clickhouse.Store{DB: db}, writer: &clickhouse.Writer{DB: db}, log: log,
		shared: shared, local: rate.NewLimiter(rate.Every(time.Minute/time.Duration(ledger.OttuThrottle.PerMinute)), ledger.OttuThrottle.PerMinute), now: time.Now,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ottu_reconcile_inquiries_total",
			Help: "Questions to Ottu's Payment Status Query by outcome (found, not_found, no_verdict, no_answer, refused, rate_limited)."}, []string{"outcome"}),
		circuit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ottu_reconcile_ottu_circuit_open",
			Help: "1 while questions to Ottu are suspended after repeated failures to get an answer."}),
	}
	q.breaker = gobreaker.NewCircuitBreaker[answer](gobreaker.Settings{
		Name:        "ottu-api",
		MaxRequests: 1,
		Timeout:     circuitOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= circuitFailures },
		// A question the pass itself cancelled says nothing of Ottu.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				q.circuit.Set(1)
				q.log.Warn().Int("failures", circuitFailures).Dur("for", circuitOpenFor).
					Msg("Ottu's API is not answering: questions suspended (findings go on without its word)")
			case gobreaker.StateClosed:
				q.circuit.Set(0)
				q.log.Info().Msg("Ottu's API answers again: questions resumed")
			}
		},
	})
	reg.MustRegister(q.calls, q.circuit)
	return q
}

// Inquire asks Ottu about a parent, or an order (question), unless the
// overall rate is spent, Ottu asked to wait, or the circuit is open
// (ledger.ErrInquiryPaused: no more questions this pass). Every question sent
// is recorded, answered or not: it counts for Ottu's per-transaction
// throttle either way. What is recorded is what the store kept: an answer
// the store refused is no verdict.
func (q *inquirer) Inquire(ctx context.Context, question ledger.Question, runID string) error {
	if q.breaker.State() == gobreaker.StateOpen {
		return fmt.Errorf("%w: Ottu's API did not answer %d questions in a row", ledger.ErrInquiryPaused, circuitFailures)
	}
	now := q.now().UTC()
	if err := q.take(ctx, now); err != nil {
		return err
	}
	a, err := q.breaker.Execute(func() (answer, error) {
		body, status, err := q.client.Inquire(ctx, question.SessionID, question.OrderNo)
		var none *ottuapi.NoAnswerError
		if errors.As(err, &none) {
			if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
				return answer{body: body, status: status}, errors.Join(err, context.Canceled)
			}
			return answer{body: body, status: status}, err // counts against the circuit
		}
		return answer{body: body, status: status, err: err}, nil // Ottu answered
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%w: Ottu's API did not answer %d questions in a row", ledger.ErrInquiryPaused, circuitFailures)
	}
	rec := clickhouse.Inquiry{SessionID: question.SessionID, OrderNo: question.OrderNo, AskedAt: now, Status: a.status, RunID: runID}
	var (
		outcome string
		result  error // what Inquire returns
		limited *ottuapi.RateLimitedError
	)
	switch {
	case err != nil:
		outcome, rec.Error, rec.Body, result = "no_answer", err.Error(), a.body, err
	case errors.As(a.err, &limited):
		q.pause(ctx, now.Add(limited.RetryAfter))
		outcome, rec.Error = "rate_limited", a.err.Error()
		result = fmt.Errorf("%w: %w", ledger.ErrInquiryPaused, a.err)
	case errors.Is(a.err, ottuapi.ErrNotFound):
		outcome, rec.Verdict = "not_found", clickhouse.VerdictNotFound
	case a.err != nil:
		outcome, rec.Error, rec.Body, result = "refused", a.err.Error(), a.body, a.err
	default:
		if reason := q.judge(ctx, question, a.body, &rec); reason != nil {
			outcome, rec.Error, rec.Body, result = "no_verdict", reason.Error(), a.body, reason
		} else {
			outcome = "found"
		}
	}
	q.calls.WithLabelValues(outcome).Inc()
	ev := q.log.Info()
	if rec.Verdict == "" {
		ev = q.log.Warn().Str("reason", rec.Error)
	}
	ev.Str("session_id", rec.SessionID).Str("order_no", rec.OrderNo).Bool("sweep", !question.Since.IsZero()).Int("status", a.status).Str("outcome", outcome).Str("verdict", rec.Verdict).
		Msg("asked Ottu's Payment Status Query")
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := q.store.RecordInquiry(wctx, rec); rerr != nil {
		return errors.Join(result, fmt.Errorf("record inquiry: %w", rerr))
	}
	return result
}

// take counts one question against Ottu's overall limit, shared by every
// replica when NATS answers.
func (q *inquirer) take(ctx context.Context, now time.Time) error {
	q.mu.Lock()
	paused := now.Before(q.pausedUntil)
	q.mu.Unlock()
	if paused {
		return fmt.Errorf("%w: Ottu asked to wait", ledger.ErrInquiryPaused)
	}
	if q.shared != nil {
		err := q.shared.Take(ctx, now)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, nats.ErrRateSpent):
			return fmt.Errorf("%w: %w", ledger.ErrInquiryPaused, err)
		}
		q.log.Debug().Err(err).Msg("shared rate of Ottu's API unreachable; using this process's own")
	}
	if !q.local.AllowN(now, 1) {
		return fmt.Errorf("%w: %d questions a minute spent", ledger.ErrInquiryPaused, ledger.OttuThrottle.PerMinute)
	}
	return nil
}

func (q *inquirer) pause(ctx context.Context, until time.Time) {
	q.mu.Lock()
	q.pausedUntil = until
	q.mu.Unlock()
	if q.shared != nil {
		if err := q.shared.Pause(ctx, until); err != nil {
			q.log.Warn().Err(err).Msg("could not share Ottu's pause with the other replicas")
		}
	}
}

// judge decides whether Ottu's answer is a verdict about the payment or the
// order asked, and if so stores it as a delivery and fills rec. The error
// says why it is not.
func (q *inquirer) judge(ctx context.Context, question ledger.Question, body []byte, rec *clickhouse.Inquiry) error {
	rd, err := events.Read(body, events.Verification{Keys: q.keys})
	if err != nil {
		return fmt.Errorf("answer not Ottu's: %w", err)
	}
	p, err := rd.Payment()
	if err != nil {
		return fmt.Errorf("answer %w", err)
	}
	// The answer came: reading what we hold and storing it must not fail
	// because the phase's time ran out meanwhile.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if question.SessionID == "" {
		// An order we never had a payment webhook for: the answer must be
		// about that order; it names the transaction (one of the order's
		// sessions) Ottu answered with.
		if p.OrderNo != question.OrderNo || p.SessionID == "" {
			return fmt.Errorf("answer is about order_no %q (session_id %q), not the order asked", p.OrderNo, p.SessionID)
		}
	} else {
		if p.SessionID != question.SessionID {
			return fmt.Errorf("answer is about session_id %q, not the payment asked", p.SessionID)
		}
		orders, refs, err := q.store.PaymentKeys(ctx, question.SessionID)
		if err != nil {
			return err
		}
		if p.OrderNo != "" && nonEmpty(orders) && !slices.Contains(orders, p.OrderNo) {
			return fmt.Errorf("answer has order_no %q, none of this payment's", p.OrderNo)
		}
		if p.ReferenceNumber != "" && nonEmpty(refs) && !slices.Contains(refs, p.ReferenceNumber) {
			return fmt.Errorf("answer has reference_number %q, none of this payment's attempts", p.ReferenceNumber)
		}
	}
	// The record is stored under an id of its own: a webhook with the very
	// same body, arriving later, is a delivery of its own, not a copy.
	msg := events.StreamMessage{Envelope: events.Envelope{ID: events.RecordIDPrefix + rd.DeliveryID(), Kind: events.KindPayment,
		ReceivedAt: rec.AskedAt, Scheme: rd.Match.Scheme, KeyIndex: rd.Match.KeyIndex, Body: body, Source: "inquiry"}, Webhook: rd.Webhook}
	res, err := q.writer.Write(ctx, []events.StreamMessage{msg}, nil)
	if err != nil {
		return fmt.Errorf("store Ottu's answer: %w", err)
	}
	if kept := storedAs(res); kept != "" {
		return fmt.Errorf("store Ottu's answer: %s", kept)
	}
	rec.SessionID, rec.OrderNo = p.SessionID, cmp.Or(question.OrderNo, p.OrderNo)
	rec.Verdict, rec.DeliveryID = clickhouse.VerdictFound, msg.ID
	rec.State, rec.Amount, rec.Currency, rec.Sandbox, rec.Children = p.State, p.Amount.String(), p.CurrencyCode, p.IsSandbox, p.Transactions
	return nil
}

func nonEmpty(xs []string) bool {
	return slices.ContainsFunc(xs, func(s string) bool { return s != "" })
}

// storedAs says why the store did not keep Ottu's answer as a payment
// delivery ("" when it did, or had it already): a record refused, or kept
// raw as unreadable, is no verdict.
func storedAs(res clickhouse.WriteResult) string {
	switch {
	case len(res.Refused) > 0:
		return "refused: " + res.Refused[0].Reason
	case res.Unreadable > 0:
		return "kept raw: a value cannot be read"
	case res.Payments == 0 && res.Duplicates == 0:
		return "not stored as a payment"
	}
	return ""
}
