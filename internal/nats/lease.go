package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseLost means this process does not hold the lease (any more).
var ErrLeaseLost = errors.New("pass lease not held")

// LeaseBucket is the key-value bucket of the pass lease.
const LeaseBucket = "OTTU_RECON_LEASE"

// Lease is a lease in a JetStream key-value bucket whose keys expire after
// TTL: whoever creates the key holds it, and keeps it by updating it (a
// compare-and-set on its revision) every TTL/3; when the holder dies the key
// expires and another takes it. The holder counts itself as holding only
// while its last renewal is younger than 2/3 of the TTL, so it stops before
// any other can start. Set the fields, then Run.
type Lease struct {
	Conn     *Conn
	Holder   string        // who holds it (shown in the key's value)
	TTL      time.Duration // default 30s
	Replicas int           // of the bucket; default 1
	// OnChange, if set, is told when this process takes or loses the lease.
	OnChange func(held bool)
	// OnError, if set, is told when the lease cannot be taken or kept for a
	// reason other than another holder (NATS away, a missing permission);
	// once per distinct error, so a lasting fault does not flood the log.
	OnError func(err error)
	// OnRecreate, if set, is told when the bucket was gone (NATS rebuilt
	// with empty storage) and was created again.
	OnRecreate func()
	// OnTTL, if set, is told when the bucket's TTL differs from TTL: the
	// bucket's wins, so that every replica counts the lease alike.
	OnTTL func(bucket time.Duration)

	lastErr string
	b       *Bucket

	mu        sync.Mutex
	held      bool
	rev       uint64
	renewed   time.Time
	bucketTTL time.Duration // the bucket's TTL, once read
}

const leaseKey = "pass"

// Held tells whether this process holds the lease now, and the key's
// revision when it does (it grows with every take and renewal).
func (l *Lease) Held() (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held && time.Since(l.renewed) > l.ttl()*2/3 {
		l.set(false, 0)
	}
	return l.held, l.rev
}

// Check is ErrLeaseLost unless this process holds the lease.
func (l *Lease) Check() error {
	if held, _ := l.Held(); !held {
		return ErrLeaseLost
	}
	return nil
}

func (l *Lease) set(held bool, rev uint64) {
	changed := held != l.held
	l.held, l.rev = held, rev
	if held {
		l.renewed = time.Now()
	}
	if changed && l.OnChange != nil {
		l.OnChange(held)
	}
}

// ttl is the lease's TTL: the bucket's once known. Call with mu held.
func (l *Lease) ttl() time.Duration {
	if l.bucketTTL > 0 {
		return l.bucketTTL
	}
	if l.TTL > 0 {
		return l.TTL
	}
	return 30 * time.Second
}

// Run takes and keeps the lease until ctx ends, then gives it up.
func (l *Lease) Run(ctx context.Context) {
	if l.TTL <= 0 {
		l.TTL = 30 * time.Second
	}
	l.b = &Bucket{Conn: l.Conn, OnRecreate: l.OnRecreate, Config: jetstream.KeyValueConfig{Bucket: LeaseBucket,
		Description: "ottu-recon: which reconcile replica runs the passes", TTL: l.TTL, History: 1,
		Replicas: max(l.Replicas, 1), Storage: jetstream.FileStorage}}
	tick := time.NewTicker(l.TTL / 3)
	defer tick.Stop()
	var kv, last jetstream.KeyValue
	for {
		var err error
		if kv, err = l.bucket(ctx, last); err != nil {
			l.report(err)
		} else {
			if kv != last { // opened or created: the bucket's TTL may differ
				l.mu.Lock()
				tick.Reset(l.ttl() / 3)
				l.mu.Unlock()
			}
			last = kv
			l.step(ctx, kv)
		}
		select {
		case <-ctx.Done():
			l.release(kv)
			return
		case <-tick.C:
		}
	}
}

// bucket returns the lease bucket (last, unless it had to be opened again).
// An existing bucket keeps its TTL, which becomes this replica's: every
// replica counts the lease with the same TTL whatever RECON_LEASE_TTL each
// was given.
func (l *Lease) bucket(ctx context.Context, last jetstream.KeyValue) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, l.TTL/3)
	defer cancel()
	kv, err := l.b.KV(ctx)
	if err != nil || kv == last {
		return kv, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease bucket status: %w", l.b.Forget(err))
	}
	l.mu.Lock()
	if ttl := st.TTL(); ttl > 0 && ttl != l.bucketTTL {
		l.bucketTTL = ttl
		if ttl != l.TTL && l.OnTTL != nil {
			l.OnTTL(ttl)
		}
	}
	l.mu.Unlock()
	return kv, nil
}

// step renews the lease when held, else tries to take it.
func (l *Lease) step(ctx context.Context, kv jetstream.KeyValue) {
	l.mu.Lock()
	held, rev, ttl := l.held, l.rev, l.ttl()
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, ttl/3)
	defer cancel()
	var (
		next uint64
		err  error
	)
	if held {
		next, err = kv.Update(ctx, leaseKey, []byte(l.Holder), rev)
	} else {
		next, err = kv.Create(ctx, leaseKey, []byte(l.Holder))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.set(true, next)
	case isWrongSequence(err):
		if held {
			l.set(false, 0) // someone else has it: ours expired
		}
	case Gone(err):
		l.report(fmt.Errorf("pass lease: bucket gone: %w", l.b.Forget(err)))
	default:
		// NATS away, a missing permission: keep what we had (Held lets it
		// lapse), and say so.
		l.report(fmt.Errorf("pass lease: %w", err))
	}
}

// report tells OnError about err unless it said the same last time.
func (l *Lease) report(err error) {
	if l.OnError == nil || err.Error() == l.lastErr {
		return
	}
	l.lastErr = err.Error()
	l.OnError(err)
}

func (l *Lease) release(kv jetstream.KeyValue) {
	l.mu.Lock()
	held, rev := l.held, l.rev
	l.set(false, 0)
	l.mu.Unlock()
	if kv == nil || !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = kv.Delete(ctx, leaseKey, jetstream.LastRevision(rev)) // others need not wait for the TTL
}
