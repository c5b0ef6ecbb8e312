package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Consumer is a durable pull consumer on the webhook stream. It fetches
// batches (by size, and by time), decodes them, hands each batch to Handle and
// acks it only after Handle succeeded. Set the fields, Open, then Run.
//
//   - A message that is not a readable envelope is marked Invalid; Handle
//     stores it as rejected; it is then terminated, never retried forever and
//     never dropped silently. A verified delivery whose body cannot be read is
//     marked Unreadable; Handle keeps it raw, and it is acked.
//   - A message Handle reports as kept elsewhere for good (stored raw
//     because the database refused it as decoded) is terminated.
//   - When Handle fails (ClickHouse away, too many parts) the same batch is
//     retried with exponential back-off, the messages kept in progress so the
//     server does not redeliver them meanwhile; nothing is acked.
//   - Memory is bounded by BatchSize messages in flight (MaxAckPending is twice
//     that, so the next batch can be ready).
type Consumer struct {
	Conn      *Conn
	Stream    StreamConfig
	Durable   string        // default "ottu-recon-store"
	BatchSize int           // default 1000
	MaxWait   time.Duration // longest a message waits for its batch to fill; default 1s
	AckWait   time.Duration // default 60s; Handle is bounded by half of it
	RetryMin  time.Duration // default 250ms
	RetryMax  time.Duration // default 15s, below AckWait
	// Handle stores a batch. maybeStored[i] tells that an earlier attempt may
	// have stored part of msgs[i] (a redelivery, a batch tried again). It
	// returns the messages to terminate (kept for good, never to be
	// delivered again); the others are acked. An error leaves the batch
	// unacked, to be tried again.
	Handle func(ctx context.Context, msgs []events.StreamMessage, maybeStored []bool) (terminate []bool, err error)
	// OnError, if set, is told about each failed attempt at a batch and each
	// failed ack; the consumer goes on.
	OnError func(err error, attempt int)
	// OnRecreate, if set, is told when the consumer (or its stream) was gone
	// from the server (NATS rebuilt with empty storage, deleted by hand) and
	// was created again.
	OnRecreate func(what string)
	// MaxBytes bounds the bytes of one batch (default 256 MiB); BatchSize
	// bounds its messages.
	MaxBytes int
	// MaxMessageBytes is the largest message the stream holds (default: the
	// server's max payload); a fetch asks for no more messages than MaxBytes
	// can hold at this size.
	MaxMessageBytes int
	Metrics         *ConsumerMetrics

	cons jetstream.Consumer
}

// ConsumerMetrics are the consumer's metrics.
type ConsumerMetrics struct {
	Pending       prometheus.Gauge
	BatchSize     prometheus.Histogram
	HandleSeconds prometheus.Histogram
	Redeliveries  prometheus.Counter
	Terminated    prometheus.Counter
	Failures      prometheus.Counter
	Recreated     *prometheus.CounterVec
}

// NewConsumerMetrics registers the consumer metrics with reg.
func NewConsumerMetrics(reg prometheus.Registerer) *ConsumerMetrics {
	m := &ConsumerMetrics{
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ottu_reconcile_consumer_pending",
			Help: "Messages in the stream not yet delivered to the store consumer (lag)."}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ottu_reconcile_batch_size",
			Help: "Messages per stored batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		HandleSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ottu_reconcile_insert_seconds",
			Help: "Time to store one batch in ClickHouse (successful attempts).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		Redeliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_reconcile_redeliveries_total",
			Help: "Messages delivered more than once to the store consumer."}),
		Terminated: prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_reconcile_terminated_total",
			Help: "Messages terminated in the stream: not envelopes (kept in rejected_webhooks) or refused by the database (kept in unreadable_webhooks)."}),
		Failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "ottu_reconcile_store_failures_total",
			Help: "Failed attempts to store a batch (each is retried)."}),
		Recreated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ottu_reconcile_nats_recreated_total",
			Help: "JetStream state found gone and created again (stream, consumer, lease_bucket, findings_stream)."}, []string{"what"}),
	}
	reg.MustRegister(m.Pending, m.BatchSize, m.HandleSeconds, m.Redeliveries, m.Terminated, m.Failures, m.Recreated)
	for _, what := range []string{"stream", "consumer", "lease_bucket", "findings_stream"} { // exported at 0 from the start
		m.Recreated.WithLabelValues(what)
	}
	return m
}

func (c *Consumer) defaults() {
	c.Durable = cmp.Or(c.Durable, "ottu-recon-store")
	c.BatchSize = cmp.Or(c.BatchSize, 1000)
	c.MaxWait = cmp.Or(c.MaxWait, time.Second)
	c.AckWait = cmp.Or(c.AckWait, 60*time.Second)
	c.RetryMin = cmp.Or(c.RetryMin, 250*time.Millisecond)
	c.RetryMax = min(cmp.Or(c.RetryMax, 15*time.Second), c.AckWait/2)
	c.MaxBytes = cmp.Or(c.MaxBytes, 256<<20)
	if c.Metrics == nil {
		c.Metrics = NewConsumerMetrics(prometheus.NewRegistry())
	}
}

// ensureStreamExists creates the stream with cfg if ingest has not yet, and
// leaves an existing stream as ingest configured it. It tells whether it
// created it.
func (c *Conn) ensureStreamExists(ctx context.Context, cfg StreamConfig) (bool, error) {
	_, err := c.js.Stream(ctx, cfg.Name)
	created := false
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = c.EnsureStream(ctx, cfg)
		created = err == nil
	}
	if err != nil {
		return false, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	return created, nil
}

// Open creates or updates the durable consumer (and the stream, if missing).
func (c *Consumer) Open(ctx context.Context) error {
	if c.Handle == nil {
		return errors.New("nats: Consumer needs Handle")
	}
	c.defaults()
	_, err := c.open(ctx)
	return err
}

// open creates the stream if missing and the consumer, or updates it; it
// tells what it had to create.
func (c *Consumer) open(ctx context.Context) (created []string, err error) {
	if made, err := c.Conn.ensureStreamExists(ctx, c.Stream); err != nil {
		return nil, err
	} else if made {
		created = append(created, "stream")
	}
	if _, err := c.Conn.js.Consumer(ctx, c.Stream.Name, c.Durable); errors.Is(err, jetstream.ErrConsumerNotFound) {
		created = append(created, "consumer")
	}
	cons, err := c.Conn.js.CreateOrUpdateConsumer(ctx, c.Stream.Name, jetstream.ConsumerConfig{
		Durable:         c.Durable,
		Description:     "ottu-recon reconcile: stores every webhook in ClickHouse",
		AckPolicy:       jetstream.AckExplicitPolicy,
		AckWait:         c.AckWait,
		MaxDeliver:      -1, // an outage must not exhaust deliveries; unreadable messages are terminated instead
		MaxAckPending:   2 * c.BatchSize,
		MaxRequestBatch: c.BatchSize,
		DeliverPolicy:   jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s: %w", c.Durable, err)
	}
	c.cons = cons
	return created, nil
}

// recover checks, after a failed fetch, whether the consumer is still on the
// server; when it (or its stream) is gone, it creates them again, so storing
// resumes by itself after NATS lost its state. Messages the new consumer
// delivers again are dropped by Handle as duplicates.
func (c *Consumer) recover(ctx context.Context) {
	if !c.Conn.Connected() {
		return // NATS away: the client reconnects by itself
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Only the server's own "not found" counts: during a leader election the
	// API answers nothing for a while, and the consumer is still there.
	_, err := c.cons.Info(ctx)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	created, err := c.open(ctx)
	if err != nil {
		c.report(fmt.Errorf("create the store consumer again: %w", err), 0)
		return
	}
	for _, what := range created {
		c.Metrics.Recreated.WithLabelValues(what).Inc()
		if c.OnRecreate != nil {
			c.OnRecreate(what)
		}
	}
}

// Run consumes until ctx ends. The batch in hand when ctx ends is still
// stored and acked (bounded by AckWait); a batch whose store keeps failing is
// nak'ed so that the next run gets it at once.
func (c *Consumer) Run(ctx context.Context) error {
	wait, failures := c.RetryMin, 0
	fetchFailed := func(err error) bool {
		// Back off, and report the first failure and then every 10th, so a
		// NATS outage does not flood the log.
		if failures%10 == 0 {
			c.report(fmt.Errorf("fetch (failure %d in a row): %w", failures+1, err), 0)
		}
		failures++
		c.recover(ctx)
		ok := sleep(ctx, wait)
		wait = min(2*wait, c.RetryMax)
		return ok
	}
	for ctx.Err() == nil {
		raw, err := c.fetch()
		if err != nil {
			if !fetchFailed(err) {
				break
			}
			continue
		}
		wait, failures = c.RetryMin, 0
		if len(raw) == 0 {
			continue
		}
		if err := c.process(ctx, raw); err != nil {
			return err
		}
	}
	return nil
}

// fetch gathers one batch: at most BatchSize messages and MaxBytes bytes,
// waiting at most MaxWait for it to fill. The byte bound is kept on this
// side: each request asks for no more messages than the bytes left can hold
// at MaxMessageBytes each. (Pull requests with max_bytes stall
// for an AckWait when a clustered stream changes leader: measured by
// TestScaleOut_NATSCluster.)
func (c *Consumer) fetch() ([]jetstream.Msg, error) {
	largest := c.MaxMessageBytes
	if largest <= 0 && c.Conn.nc != nil {
		largest = int(c.Conn.nc.MaxPayload())
	}
	largest = max(largest, 1<<10)
	left := max(c.MaxBytes, largest)
	deadline := time.Now().Add(c.MaxWait)
	var raw []jetstream.Msg
	for len(raw) < c.BatchSize {
		n := min(c.BatchSize-len(raw), left/largest)
		wait := time.Until(deadline)
		if n < 1 || (len(raw) > 0 && wait < time.Millisecond) {
			break
		}
		batch, err := c.cons.Fetch(n, jetstream.FetchMaxWait(max(wait, time.Millisecond)))
		if err != nil {
			if len(raw) > 0 {
				break // what was fetched is processed; the error shows again at the next fetch
			}
			return nil, err
		}
		got := 0
		for msg := range batch.Messages() {
			raw = append(raw, msg)
			left -= len(msg.Data()) + headerBytes(msg)
			got++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(raw) == 0 {
			return nil, err
		}
		if got < n {
			break // the wait ran out with fewer messages: the batch is what there is
		}
	}
	return raw, nil
}

func headerBytes(msg jetstream.Msg) int {
	n := 0
	for k, vs := range msg.Headers() {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Decode turns a stream message into a StreamMessage: Invalid when it is not
// a readable envelope, Unreadable when it is a verified delivery whose body
// cannot be read as Ottu documents it.
func Decode(msg jetstream.Msg) events.StreamMessage {
	var out events.StreamMessage
	if meta, err := msg.Metadata(); err == nil {
		out.StreamSeq = meta.Sequence.Stream
	}
	env, err := Envelope(msg.Headers(), msg.Data())
	if err != nil {
		out.Body = msg.Data()
		out.Invalid = err.Error()
		return out
	}
	out.Envelope = env
	if env.Rejected() {
		return out
	}
	at := env.ReceivedAt
	if at.Before(events.MinTimestamp) || at.After(events.MaxTimestamp) {
		// The database would store another time in its place (the driver
		// wraps DateTime): keep the delivery raw, stored now, and say why.
		m, _ := events.ParseObject(env.Body)
		u := events.Salvage(m, fmt.Errorf("envelope receive time %s outside %d–%d", at.Format(time.RFC3339),
			events.MinTimestamp.Year(), events.MaxTimestamp.Year()))
		u.Field = "received_at"
		out.Unreadable, out.ReceivedAt = &u, time.Time{}
		return out
	}
	rd, err := events.Read(env.Body, events.Verification{Trusted: true}) // ingest verified it
	switch {
	case err != nil:
		out.Unreadable = &events.Unreadable{Kind: env.Kind, Reason: err.Error()}
	case rd.Unreadable != nil:
		out.Unreadable = rd.Unreadable
	case rd.Kind != env.Kind && env.Kind != events.KindUnreadable:
		out.Invalid = fmt.Sprintf("body is a %s webhook, envelope says %s", rd.Kind, env.Kind)
	default:
		out.Webhook = rd.Webhook
	}
	return out
}

func (c *Consumer) process(ctx context.Context, raw []jetstream.Msg) error {
	msgs := make([]events.StreamMessage, len(raw))
	maybeStored := make([]bool, len(raw))
	for i, m := range raw {
		msgs[i] = Decode(m)
		if meta, err := m.Metadata(); err == nil {
			if meta.NumDelivered > 1 {
				c.Metrics.Redeliveries.Inc()
				maybeStored[i] = true // an earlier delivery may have been partly stored
			}
			if i == len(raw)-1 {
				c.Metrics.Pending.Set(float64(meta.NumPending))
			}
		}
	}
	c.Metrics.BatchSize.Observe(float64(len(raw)))

	// Once fetched, a batch is finished even if ctx ends: it is either stored
	// and acked, or nak'ed for the next run.
	wctx := context.WithoutCancel(ctx)
	wait := c.RetryMin
	var terminate []bool
	for attempt := 1; ; attempt++ {
		hctx, cancel := context.WithTimeout(wctx, c.AckWait/2)
		start := time.Now()
		var err error
		terminate, err = c.Handle(hctx, msgs, maybeStored)
		cancel()
		if err == nil {
			c.Metrics.HandleSeconds.Observe(time.Since(start).Seconds())
			break
		}
		c.Metrics.Failures.Inc()
		c.report(err, attempt)
		for i := range maybeStored {
			maybeStored[i] = true
		}
		if ctx.Err() != nil {
			c.settle(raw, func(m jetstream.Msg) error { return m.Nak() })
			return nil
		}
		c.settle(raw, func(m jetstream.Msg) error { return m.InProgress() })
		if !sleep(ctx, wait) {
			c.settle(raw, func(m jetstream.Msg) error { return m.Nak() })
			return nil
		}
		wait = min(2*wait, c.RetryMax)
	}
	for i, m := range raw {
		var err error
		if msgs[i].Invalid != "" || (i < len(terminate) && terminate[i]) {
			// Kept (rejected_webhooks or unreadable_webhooks); never redelivered.
			c.Metrics.Terminated.Inc()
			err = m.Term()
		} else {
			err = m.Ack()
		}
		if err != nil {
			// The message was stored; a redelivery is a harmless duplicate.
			c.report(fmt.Errorf("ack stream seq %d: %w", msgs[i].StreamSeq, err), 0)
		}
	}
	return nil
}

func (c *Consumer) settle(raw []jetstream.Msg, f func(jetstream.Msg) error) {
	for _, m := range raw {
		if err := f(m); err != nil {
			c.report(fmt.Errorf("settle message: %w", err), 0)
			return
		}
	}
}

func (c *Consumer) report(err error, attempt int) {
	if c.OnError != nil {
		c.OnError(err, attempt)
	}
}
