package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LimitsBucket is the key-value bucket of the rate limits every reconcile
// replica shares.
const LimitsBucket = "OTTU_RECON_LIMITS"

// SharedRate is a sliding-window rate limit that every replica shares
// through a JetStream key-value entry: at most Limit events in any Window,
// and none while paused (a 429's Retry-After). A failover therefore starts
// where the last holder left off instead of with a full budget. Updates are
// compare-and-set on the entry's revision. Set the fields; safe for
// concurrent use.
type SharedRate struct {
	Conn     *Conn
	Key      string
	Limit    int
	Window   time.Duration
	Replicas int // of the bucket; default 1

	mu sync.Mutex
	kv jetstream.KeyValue
}

type rateState struct {
	At          []int64 `json:"at"`           // Unix milliseconds of the events in the window
	PausedUntil int64   `json:"paused_until"` // Unix milliseconds
}

// ErrRateSpent means no event is allowed now: the window is full, or the
// limit is paused.
var ErrRateSpent = errors.New("shared rate spent")

// Take counts one event at now, or fails with ErrRateSpent (wrapped with
// until when) when none is allowed; any other error means the shared state
// could not be read or written (NATS away).
func (r *SharedRate) Take(ctx context.Context, now time.Time) error {
	return r.update(ctx, func(st *rateState) error {
		ms := now.UnixMilli()
		if st.PausedUntil > ms {
			return fmt.Errorf("%w: paused until %s", ErrRateSpent, time.UnixMilli(st.PausedUntil).UTC().Format(time.RFC3339))
		}
		kept := st.At[:0]
		for _, at := range st.At {
			if ms-at < r.Window.Milliseconds() {
				kept = append(kept, at)
			}
		}
		st.At = kept
		if len(st.At) >= r.Limit {
			return fmt.Errorf("%w: %d in the last %s", ErrRateSpent, len(st.At), r.Window)
		}
		st.At = append(st.At, ms)
		return nil
	})
}

// Pause allows no event before until.
func (r *SharedRate) Pause(ctx context.Context, until time.Time) error {
	return r.update(ctx, func(st *rateState) error {
		st.PausedUntil = max(st.PausedUntil, until.UnixMilli())
		return nil
	})
}

func (r *SharedRate) update(ctx context.Context, change func(*rateState) error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for range 10 {
		kv, err := r.bucket(ctx)
		if err != nil {
			return err
		}
		var st rateState
		var rev uint64
		e, err := kv.Get(ctx, r.Key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			r.forget(err)
			return fmt.Errorf("read %s/%s: %w", LimitsBucket, r.Key, err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				st = rateState{} // unreadable: start over rather than stop for good
			}
		}
		if err := change(&st); err != nil {
			return err
		}
		b, _ := json.Marshal(st)
		if rev == 0 {
			_, err = kv.Create(ctx, r.Key, b)
		} else {
			_, err = kv.Update(ctx, r.Key, b, rev)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err):
			continue // another replica wrote first: read again
		default:
			r.forget(err)
			return fmt.Errorf("write %s/%s: %w", LimitsBucket, r.Key, err)
		}
	}
	return fmt.Errorf("write %s/%s: too many concurrent updates", LimitsBucket, r.Key)
}

func (r *SharedRate) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv != nil {
		return r.kv, nil
	}
	if r.Conn == nil || !r.Conn.Connected() {
		return nil, errors.New("nats not connected")
	}
	kv, err := r.Conn.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LimitsBucket,
		Description: "ottu-recon: rate limits shared by the reconcile replicas (Ottu's API)", History: 1,
		Replicas: max(r.Replicas, 1), Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", LimitsBucket, err)
	}
	r.kv = kv
	return kv, nil
}

// forget drops the bucket handle after an error that may mean the bucket is
// gone (NATS rebuilt empty): the next call creates it again.
func (r *SharedRate) forget(err error) {
	if Gone(err) {
		r.mu.Lock()
		r.kv = nil
		r.mu.Unlock()
	}
}

// Gone tells whether err means a JetStream stream, consumer or bucket does
// not exist (any more): the server lost its state, or someone deleted it.
func Gone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrConsumerDoesNotExist) || errors.Is(err, nats.ErrNoResponders)
}
