// Package webhook is ingest's HTTP edge: it receives Ottu webhooks, verifies and
// decodes them (package events), stores each one durably through a Publisher,
// and maps every outcome to the status code docs/product.md promises.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Publisher stores an envelope durably and returns only once it is stored.
type Publisher interface {
	Publish(ctx context.Context, env events.Envelope) (events.PublishResult, error)
}

// Path is where Ottu posts (docs/product.md).
const Path = "/webhooks/ottu"

// keptPrefixBytes is how much of an oversized body is kept for forensics.
const keptPrefixBytes = 64 << 10

// Reasons a delivery is rejected; they are metric labels and are stored with
// the rejected delivery.
const (
	ReasonNotObject        = "not_json_object"
	ReasonMissingSignature = "missing_signature"
	ReasonBadSignature     = "bad_signature"
	ReasonUnknownKind      = "unknown_kind"
	ReasonInvalidField     = "invalid_field"
	ReasonTooLarge         = "too_large"
	ReasonTooComplex       = "too_complex"
	ReasonUnreadable       = "unreadable_body"
)

// Handler serves POST /webhooks/ottu.
type Handler struct {
	Keys      [][]byte // OTTU_HMAC_KEYS, in order; a match reports its index
	Publisher Publisher
	Logger    zerolog.Logger
	Metrics   *Metrics
	Now       func() time.Time
	// KeepBudget, if set, bounds the bytes of rejected bodies kept for
	// forensics (bytes per second, burst one minute's worth); beyond it a
	// rejection keeps only its reason, and is counted.
	KeepBudget *rate.Limiter
}

// rejection is a refused delivery: its status, its reason label and the detail
// kept with it. The client only ever sees the status and a fixed message.
type rejection struct {
	status int
	reason string
	detail string
}

func (r *rejection) Error() string { return r.reason + ": " + r.detail }

// classify maps a verification or decoding error to a rejection. It is the one
// place where errors become status codes.
func classify(err error) *rejection {
	switch {
	case errors.Is(err, events.ErrTooComplex):
		return &rejection{http.StatusBadRequest, ReasonTooComplex, err.Error()}
	case errors.Is(err, events.ErrNotObject):
		return &rejection{http.StatusBadRequest, ReasonNotObject, err.Error()}
	case errors.Is(err, events.ErrMissingSignature):
		return &rejection{http.StatusUnauthorized, ReasonMissingSignature, err.Error()}
	case errors.Is(err, events.ErrBadSignature):
		return &rejection{http.StatusUnauthorized, ReasonBadSignature, err.Error()}
	case errors.Is(err, events.ErrUnknownKind):
		return &rejection{http.StatusBadRequest, ReasonUnknownKind, err.Error()}
	case errors.Is(err, events.ErrInvalidField):
		return &rejection{http.StatusBadRequest, ReasonInvalidField, err.Error()}
	}
	return &rejection{http.StatusBadRequest, ReasonUnreadable, err.Error()}
}

var statusText = map[int]string{
	http.StatusBadRequest:            "not a payment or operation webhook",
	http.StatusUnauthorized:          "signature missing or invalid",
	http.StatusRequestEntityTooLarge: "body over 1 MiB",
	http.StatusServiceUnavailable:    "cannot store the webhook now",
	http.StatusMethodNotAllowed:      "use POST",
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.Metrics.observe("unknown", "method_not_allowed")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": statusText[http.StatusMethodNotAllowed]})
		return
	}
	received := h.now()
	log := h.Logger.With().Str("remote", r.RemoteAddr).Logger()
	// Once started, storing must finish even if Ottu hangs up: it may time out
	// and re-send, and the re-delivery de-duplicates.
	ctx := context.WithoutCancel(r.Context())

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, events.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reject(ctx, w, log, received, truncate(body, keptPrefixBytes),
				&rejection{http.StatusRequestEntityTooLarge, ReasonTooLarge, "body over " + strconv.Itoa(events.MaxBodyBytes) + " bytes; first 64 KiB kept"})
			return
		}
		h.reject(ctx, w, log, received, body, &rejection{http.StatusBadRequest, ReasonUnreadable, err.Error()})
		return
	}

	// Before the signature is known good, nothing worse than linear runs on
	// the body (events.Read bounds its shape first). Once it is, no value it
	// carries makes the answer anything but 200 once it is stored: what
	// cannot be read is kept raw and raised as UNREADABLE_WEBHOOK by the next
	// pass.
	rd, err := events.Read(body, events.Verification{Keys: h.Keys, Header: r.Header.Get("Signature")})
	if err != nil {
		h.reject(ctx, w, log, received, body, classify(err))
		return
	}
	h.Metrics.Signatures.WithLabelValues(string(rd.Match.Scheme), strconv.Itoa(rd.Match.KeyIndex)).Inc()
	kind, wh, unreadable, match := rd.Kind, rd.Webhook, rd.Unreadable, rd.Match

	env := events.Envelope{ID: rd.DeliveryID(), Kind: kind, ReceivedAt: received,
		Scheme: match.Scheme, KeyIndex: match.KeyIndex, Body: body}
	log = log.With().Str("delivery_id", env.ID).Str("kind", string(kind)).Logger()
	start := time.Now()
	res, err := h.Publisher.Publish(ctx, env)
	h.Metrics.PublishSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		h.Metrics.observe(string(kind), "unavailable")
		log.Error().Err(err).Msg("webhook not stored; answered 503")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": statusText[http.StatusServiceUnavailable]})
		return
	}
	outcome := "stored"
	switch {
	case res.Spooled:
		outcome = "spooled"
	case res.Duplicate:
		outcome = "duplicate"
	}
	h.Metrics.observe(string(kind), outcome)
	ev := log.Info().Str("outcome", outcome).Str("scheme", string(match.Scheme)).Int("key_index", match.KeyIndex).
		Uint64("stream_seq", res.Sequence)
	switch {
	case unreadable != nil:
		h.Metrics.Unreadable.WithLabelValues(unreadable.Field).Inc()
		ev = log.Warn().Str("outcome", outcome).Str("session_id", unreadable.SessionID).
			Str("field", unreadable.Field).Str("reason", unreadable.Reason)
		ev.Msg("authentic webhook kept raw: a value cannot be read; the next pass raises UNREADABLE_WEBHOOK")
	case wh.Payment != nil:
		p := wh.Payment
		ev.Str("session_id", p.SessionID).Str("state", p.State).Msg("webhook accepted")
	default:
		o := wh.Operation
		ev.Str("session_id", o.SessionID).Str("reference_number", o.ReferenceNumber).
			Str("operation", o.Operation).Str("txn_state", o.Txn.State).Msg("webhook accepted")
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": outcome, "delivery_id": env.ID})
}

// reject answers rej's status and keeps the delivery, with its reason, on the
// rejected subject. Keeping it is best effort: its failure is logged, the
// status stays the same.
func (h *Handler) reject(ctx context.Context, w http.ResponseWriter, log zerolog.Logger, received time.Time, body []byte, rej *rejection) {
	h.Metrics.observe("unknown", "rejected")
	h.Metrics.Rejected.WithLabelValues(rej.reason).Inc()
	reason := rej.reason + ": " + rej.detail
	id := events.RejectedID(body, reason) // of the body as received, kept or not
	if h.KeepBudget != nil && len(body) > 0 && !h.KeepBudget.AllowN(received, len(body)) {
		h.Metrics.BodiesDropped.Inc()
		reason += fmt.Sprintf(" (body of %d bytes not kept: over the budget for rejected bodies)", len(body))
		body = nil
	}
	env := events.Envelope{ID: id, ReceivedAt: received, Reject: reason, Body: body}
	if _, err := h.Publisher.Publish(ctx, env); err != nil {
		log.Error().Err(err).Str("delivery_id", env.ID).Msg("rejected webhook not kept")
	}
	log.Warn().Str("delivery_id", env.ID).Str("reason", rej.reason).Str("detail", rej.detail).
		Int("status", rej.status).Int("bytes", len(body)).Msg("webhook rejected")
	writeJSON(w, rej.status, map[string]string{"error": statusText[rej.status]})
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}

// Metrics are ingest's webhook metrics.
type Metrics struct {
	Webhooks       *prometheus.CounterVec
	Rejected       *prometheus.CounterVec
	Signatures     *prometheus.CounterVec
	Unreadable     *prometheus.CounterVec
	BodiesDropped  prometheus.Counter
	PublishSeconds prometheus.Histogram
}

// NewMetrics registers the webhook metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ottu_ingest_webhooks_total",
			Help: "Webhook deliveries by kind (payment, operation, unknown) and outcome (stored, duplicate, spooled, rejected, unavailable, method_not_allowed).",
		}, []string{"kind", "outcome"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ottu_ingest_rejected_total",
			Help: "Rejected deliveries by reason.",
		}, []string{"reason"}),
		Signatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ottu_ingest_signature_matches_total",
			Help: "Verified deliveries by signature scheme (A, B) and index of the matching key in OTTU_HMAC_KEYS.",
		}, []string{"scheme", "key_index"}),
		Unreadable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ottu_ingest_unreadable_total",
			Help: "Authentic webhooks with a value that cannot be read, kept raw (answered 200), by field.",
		}, []string{"field"}),
		BodiesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ottu_ingest_rejected_bodies_dropped_total",
			Help: "Rejected deliveries whose body was not kept (over INGEST_REJECTED_BYTES_PER_MINUTE); their reason is.",
		}),
		PublishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ottu_ingest_publish_seconds",
			Help:    "Time to store a verified webhook durably (stream PubAck or local spool).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	reg.MustRegister(m.Webhooks, m.Rejected, m.Signatures, m.Unreadable, m.BodiesDropped, m.PublishSeconds)
	// Every reason is exported from the start, at 0: a rate over it sees
	// the first rejection (deploy/prometheus).
	for _, reason := range []string{ReasonNotObject, ReasonMissingSignature, ReasonBadSignature, ReasonUnknownKind,
		ReasonInvalidField, ReasonTooLarge, ReasonTooComplex, ReasonUnreadable} {
		m.Rejected.WithLabelValues(reason)
	}
	return m
}

func (m *Metrics) observe(kind, outcome string) { m.Webhooks.WithLabelValues(kind, outcome).Inc() }
