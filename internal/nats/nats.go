// Package nats wraps nats.go and its jetstream API for ottu-recon: the
// connection, the webhook stream, the publisher ingest uses, the durable
// consumer reconcile uses, and an embedded nats-server for small deployments,
// the demo and the tests.
package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// StreamConfig describes the stream ingest writes and reconcile reads.
type StreamConfig struct {
	Name          string        // default OTTU_WEBHOOKS
	SubjectPrefix string        // default "ottu"
	Replicas      int           // default 1
	MaxAge        time.Duration // retention; default 7 days
	Duplicates    time.Duration // de-duplication window by delivery id; default 1h
	MaxBytes      int64         // 0: no limit
}

// DefaultStreamConfig returns the defaults documented in the README.
func DefaultStreamConfig() StreamConfig {
	return StreamConfig{Name: "OTTU_WEBHOOKS", SubjectPrefix: "ottu", Replicas: 1,
		MaxAge: 7 * 24 * time.Hour, Duplicates: time.Hour}
}

// Validate names the offending field.
func (c StreamConfig) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("stream name is empty")
	case c.SubjectPrefix == "":
		return errors.New("subject prefix is empty")
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("stream replicas %d: want 1 to 5", c.Replicas)
	case c.MaxAge <= 0:
		return errors.New("stream max age must be positive")
	case c.Duplicates <= 0 || c.Duplicates > c.MaxAge:
		return fmt.Errorf("duplicate window %s: want positive and at most the max age", c.Duplicates)
	}
	return nil
}

// Subject returns the subject an envelope is published on: the prefix, then
// "webhooks.payment", "webhooks.operation", or "rejected" for a delivery
// ingest refused (never on the verified subjects).
func (c StreamConfig) Subject(env events.Envelope) string {
	if env.Rejected() {
		return c.SubjectPrefix + ".rejected"
	}
	return c.SubjectPrefix + ".webhooks." + string(env.Kind)
}

func (c StreamConfig) subjects() []string {
	return []string{c.SubjectPrefix + ".webhooks.*", c.SubjectPrefix + ".rejected"}
}

func (c StreamConfig) jetstream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "Ottu webhooks verified (and rejected) by ottu-recon ingest",
		Subjects:    c.subjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    c.Replicas,
		MaxAge:      c.MaxAge,
		Duplicates:  c.Duplicates,
		MaxBytes:    orUnlimited(c.MaxBytes),
		Discard:     jetstream.DiscardOld,
	}
}

func orUnlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Conn is a NATS connection with JetStream. Set the exported fields and Open.
type Conn struct {
	URL           string
	Name          string // client name shown by the server
	Auth          Auth
	ReconnectWait time.Duration
	Logger        zerolog.Logger

	nc *nats.Conn
	js jetstream.JetStream
}

// Open connects. It does not wait for the server: with RetryOnFailedConnect the
// client keeps trying in the background, so a daemon starts (and ingest
// spools) while NATS is away.
func (c *Conn) Open() error {
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = time.Second
	}
	log := c.Logger
	authOpts, err := c.Auth.options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(c.URL, append(authOpts,
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(c.ReconnectWait),
		nats.RetryOnFailedConnect(true),
		// No client-side buffering while disconnected: a publish fails at once,
		// and the caller spools it durably instead of holding it in memory.
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("nats connected") }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("nats reconnected") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn().Err(err).Msg("nats error") // e.g. a permission the account lacks
		}),
	)...)
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", RedactURL(c.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("open jetstream: %w", err)
	}
	c.nc, c.js = nc, js
	return nil
}

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc != nil && c.nc.IsConnected() }

// JetStream returns the JetStream handle.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Close drains the connection (pending publishes and subscriptions finish),
// bounded by ctx, then closes it.
func (c *Conn) Close(ctx context.Context) error {
	if c.nc == nil || c.nc.IsClosed() {
		return nil
	}
	if !c.nc.IsConnected() {
		c.nc.Close()
		return nil
	}
	closed := make(chan struct{})
	c.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
		return fmt.Errorf("drain nats: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		c.nc.Close()
		return fmt.Errorf("drain nats: %w", ctx.Err())
	}
}

// EnsureStream creates the stream or updates it to cfg. A stream that is
// already as cfg says is left alone: every daemon ensures the stream when it
// connects, and an update the server need not make is one that can race a
// consumer being created by another replica (the embedded server's file
// store, under the race detector).
func (c *Conn) EnsureStream(ctx context.Context, cfg StreamConfig) (jetstream.Stream, error) {
	return c.ensureStream(ctx, cfg.jetstream())
}

func (c *Conn) ensureStream(ctx context.Context, want jetstream.StreamConfig) (jetstream.Stream, error) {
	if s, err := c.js.Stream(ctx, want.Name); err == nil && sameStream(s.CachedInfo().Config, want) {
		return s, nil
	}
	s, err := c.js.CreateOrUpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", want.Name, err)
	}
	return s, nil
}

// sameStream tells whether a stream's config has every field ottu-recon
// sets as want sets it.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Storage == want.Storage && have.Retention == want.Retention && max(have.Replicas, 1) == max(want.Replicas, 1) &&
		have.MaxAge == want.MaxAge && have.Duplicates == want.Duplicates && orUnlimited(have.MaxBytes) == orUnlimited(want.MaxBytes) &&
		have.Discard == want.Discard
}

// Header names carrying the envelope over NATS. The body is the raw request body.
const (
	HeaderVersion    = "Ottu-Envelope"
	HeaderKind       = "Ottu-Kind"
	HeaderReceivedAt = "Ottu-Received-At"
	HeaderScheme     = "Ottu-Signature-Scheme"
	HeaderKeyIndex   = "Ottu-Key-Index"
	HeaderReject     = "Ottu-Reject-Reason"
)

// Message encodes env as a NATS message on the configured subject, with the
// delivery id as Nats-Msg-Id so the stream de-duplicates re-deliveries.
func (c StreamConfig) Message(env events.Envelope) *nats.Msg {
	m := nats.NewMsg(c.Subject(env))
	m.Data = env.Body
	m.Header.Set(nats.MsgIdHdr, env.ID)
	m.Header.Set(HeaderVersion, events.EnvelopeVersion)
	m.Header.Set(HeaderReceivedAt, env.ReceivedAt.UTC().Format(time.RFC3339Nano))
	if env.Rejected() {
		m.Header.Set(HeaderReject, env.Reject)
	} else {
		m.Header.Set(HeaderKind, string(env.Kind))
		m.Header.Set(HeaderScheme, string(env.Scheme))
		m.Header.Set(HeaderKeyIndex, strconv.Itoa(env.KeyIndex))
	}
	return m
}

// ErrBadEnvelope means a message is not an envelope this version understands.
var ErrBadEnvelope = errors.New("bad envelope")

// Envelope decodes a message written by Message.
func Envelope(h nats.Header, data []byte) (events.Envelope, error) {
	if v := h.Get(HeaderVersion); v != events.EnvelopeVersion {
		return events.Envelope{}, fmt.Errorf("%w: version %q", ErrBadEnvelope, v)
	}
	at, err := time.Parse(time.RFC3339Nano, h.Get(HeaderReceivedAt))
	if err != nil {
		return events.Envelope{}, fmt.Errorf("%w: received-at: %v", ErrBadEnvelope, err)
	}
	env := events.Envelope{ID: h.Get(nats.MsgIdHdr), ReceivedAt: at.UTC(), Reject: h.Get(HeaderReject), Body: data}
	if env.ID == "" {
		return events.Envelope{}, fmt.Errorf("%w: no message id", ErrBadEnvelope)
	}
	if !env.Rejected() {
		env.Kind = events.Kind(h.Get(HeaderKind))
		env.Scheme = events.Scheme(h.Get(HeaderScheme))
		env.KeyIndex, _ = strconv.Atoi(h.Get(HeaderKeyIndex))
		if env.Kind != events.KindPayment && env.Kind != events.KindOperation && env.Kind != events.KindUnreadable {
			return events.Envelope{}, fmt.Errorf("%w: kind %q", ErrBadEnvelope, env.Kind)
		}
	}
	return env, nil
}

// Publisher publishes envelopes to the stream and returns after the PubAck.
// It creates or updates the stream the first time it can reach the server.
type Publisher struct {
	Conn   *Conn
	Stream StreamConfig
	// OnRecreate, if set, is told when the stream was found gone (NATS
	// rebuilt with empty storage) and was created again.
	OnRecreate func()

	ready atomic.Bool
	lost  atomic.Bool
}

var _ interface {
	Publish(context.Context, events.Envelope) (events.PublishResult, error)
} = (*Publisher)(nil)

// Publish stores env in the stream. A message larger than the server's max
// payload fails with ErrTooLarge.
func (p *Publisher) Publish(ctx context.Context, env events.Envelope) (events.PublishResult, error) {
	if !p.Conn.Connected() {
		return events.PublishResult{}, nats.ErrConnectionClosed
	}
	if err := p.Ensure(ctx); err != nil {
		return events.PublishResult{}, err
	}
	ack, err := p.Conn.js.PublishMsg(ctx, p.Stream.Message(env), jetstream.WithExpectStream(p.Stream.Name))
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return events.PublishResult{}, fmt.Errorf("publish %s: %w: %w", env.ID, ErrTooLarge, err)
		}
		if Gone(err) {
			p.ready.Store(false) // re-create it next time (a new, empty server)
			p.lost.Store(true)
		}
		return events.PublishResult{}, fmt.Errorf("publish %s: %w", env.ID, err)
	}
	return events.PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Ensure creates or updates the stream unless that was done already.
func (p *Publisher) Ensure(ctx context.Context) error {
	if p.ready.Load() {
		return nil
	}
	if _, err := p.Conn.EnsureStream(ctx, p.Stream); err != nil {
		return err
	}
	p.ready.Store(true)
	if p.lost.Swap(false) && p.OnRecreate != nil {
		p.OnRecreate()
	}
	return nil
}

// ErrTooLarge means a message exceeds the server's max payload; retrying
// cannot help.
var ErrTooLarge = errors.New("message larger than the server's max payload")

// FindingsSubject is where findings are announced (docs/product.md, "Alerts").
const FindingsSubject = "recon.findings"

// FindingsStream keeps what is announced on FindingsSubject, so that an
// announcement is acknowledged (and a listener that was away can catch up).
const FindingsStream = "OTTU_FINDINGS"

// FindingsPublisher announces findings on FindingsSubject through JetStream:
// Publish returns only once the stream stored the message. Core NATS
// subscribers to the subject receive it as before.
type FindingsPublisher struct {
	Conn     *Conn
	Replicas int           // default 1
	MaxAge   time.Duration // default 30 days

	ready atomic.Bool
}

func (p *FindingsPublisher) ensure(ctx context.Context) error {
	if p.ready.Load() {
		return nil
	}
	_, err := p.Conn.ensureStream(ctx, jetstream.StreamConfig{
		Name:        FindingsStream,
		Description: "ottu-recon findings announced by reconcile",
		Subjects:    []string{FindingsSubject},
		Storage:     jetstream.FileStorage,
		Replicas:    max(p.Replicas, 1),
		MaxAge:      cmp.Or(p.MaxAge, 30*24*time.Hour),
		Duplicates:  time.Hour,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("create or update stream %s: %w", FindingsStream, err)
	}
	p.ready.Store(true)
	return nil
}

// Publish stores body on FindingsSubject under the message id (a repeat
// within an hour is dropped by the stream) and waits for the acknowledgement.
func (p *FindingsPublisher) Publish(ctx context.Context, id string, body []byte) error {
	if !p.Conn.Connected() {
		return fmt.Errorf("publish %s: %w", FindingsSubject, nats.ErrConnectionClosed)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	if err := p.ensure(ctx); err != nil {
		return err
	}
	msg := nats.NewMsg(FindingsSubject)
	msg.Data = body
	msg.Header.Set(nats.MsgIdHdr, id)
	if _, err := p.Conn.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(FindingsStream)); err != nil {
		if Gone(err) {
			p.ready.Store(false) // created again at the next publish
		}
		return fmt.Errorf("publish %s: %w", FindingsSubject, err)
	}
	return nil
}

// RedactURL renders a NATS URL list (comma-separated) without credentials:
// a user and password, or a token, in a URL's user part, with or without a
// scheme (nats.go reads "alice:secret@host:4222" as nats://alice:secret@...).
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "://") {
			p = "nats://" + p // as nats.go reads it; else "alice" would parse as the scheme
		}
		u, err := url.Parse(p)
		if err != nil {
			parts[i] = "(a URL, not shown)"
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
