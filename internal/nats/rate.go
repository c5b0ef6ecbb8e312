package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

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

	once sync.Once
	b    *Bucket
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
	r.once.Do(func() {
		r.b = &Bucket{Conn: r.Conn, Config: jetstream.KeyValueConfig{Bucket: LimitsBucket,
			Description: "ottu-recon: rate limits shared by the reconcile replicas (Ottu's API)", History: 1,
			Replicas: max(r.Replicas, 1), Storage: jetstream.FileStorage}}
	})
	for range 10 {
		kv, err := r.b.KV(ctx)
		if err != nil {
			return err
		}
		var st rateState
		var rev uint64
		e, err := kv.Get(ctx, r.Key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read %s/%s: %w", LimitsBucket, r.Key, r.b.Forget(err))
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
		case isWrongSequence(err):
			continue // another replica wrote first: read again
		default:
			return fmt.Errorf("write %s/%s: %w", LimitsBucket, r.Key, r.b.Forget(err))
		}
	}
	return fmt.Errorf("write %s/%s: too many concurrent updates", LimitsBucket, r.Key)
}
