package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is a JetStream key-value bucket that is created when missing, and
// created again when NATS lost it (a server rebuilt with empty storage, or a
// bucket deleted by hand): the one home of the pass lease's, the shared rate
// limits' and the console sessions' buckets. Set the fields; safe for
// concurrent use.
type Bucket struct {
	Conn *Conn
	// Config is the bucket's configuration when this process creates it. An
	// existing bucket keeps its own (the first replica to create it wins).
	Config jetstream.KeyValueConfig
	// OnRecreate, if set, is told when the bucket had been open, was gone,
	// and was created again.
	OnRecreate func()

	mu   sync.Mutex
	kv   jetstream.KeyValue
	seen bool // the bucket was open once: finding it missing later is a rebuild
}

// KV returns the bucket: the handle in hand, else the bucket opened, else
// created.
func (b *Bucket) KV(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	if b.Conn == nil || !b.Conn.Connected() {
		return nil, fmt.Errorf("bucket %s: nats not connected", b.Config.Bucket)
	}
	js := b.Conn.js
	kv, err := js.KeyValue(ctx, b.Config.Bucket)
	created := false
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, b.Config)
		created = err == nil
		if errors.Is(err, jetstream.ErrBucketExists) { // another replica created it meanwhile
			kv, err = js.KeyValue(ctx, b.Config.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", b.Config.Bucket, err)
	}
	if created && b.seen && b.OnRecreate != nil {
		b.OnRecreate()
	}
	b.kv, b.seen = kv, true
	return kv, nil
}

// Forget drops the handle when err means the bucket is gone (Gone), so that
// the next KV creates it again. It returns err.
func (b *Bucket) Forget(err error) error {
	if Gone(err) {
		b.mu.Lock()
		b.kv = nil
		b.mu.Unlock()
	}
	return err
}

// SessionsBucket is the bucket of the findings console's sessions
// (OTTU_RECON_CONSOLE_SESSIONS), whose entries expire after ttl.
func SessionsBucket(conn *Conn, ttl time.Duration, replicas int) *Bucket {
	return &Bucket{Conn: conn, Config: jetstream.KeyValueConfig{Bucket: "OTTU_RECON_CONSOLE_SESSIONS",
		Description: "ottu-recon console sessions", TTL: ttl, Replicas: max(replicas, 1), Storage: jetstream.FileStorage}}
}

// Put stores value under key.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) error {
	kv, err := b.KV(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("put %s/%s: %w", b.Config.Bucket, key, b.Forget(err))
	}
	return nil
}

// Get returns the value under key; false when there is none.
func (b *Bucket) Get(ctx context.Context, key string) ([]byte, bool, error) {
	kv, err := b.KV(ctx)
	if err != nil {
		return nil, false, err
	}
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("get %s/%s: %w", b.Config.Bucket, key, b.Forget(err))
	}
	return e.Value(), true, nil
}

// Delete removes key and its history.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	kv, err := b.KV(ctx)
	if err != nil {
		return err
	}
	if err := kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("purge %s/%s: %w", b.Config.Bucket, key, b.Forget(err))
	}
	return nil
}

// Keys lists the bucket's keys.
func (b *Bucket) Keys(ctx context.Context) ([]string, error) {
	kv, err := b.KV(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := kv.Keys(ctx)
	switch {
	case errors.Is(err, jetstream.ErrNoKeysFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("list %s: %w", b.Config.Bucket, b.Forget(err))
	}
	return keys, nil
}

// AlertsBucket is the bucket of the alerts posted to Alertmanager as firing
// (OTTU_RECON_ALERTMANAGER): what a restarted reconcile must still end.
func AlertsBucket(conn *Conn, replicas int) *Bucket {
	return &Bucket{Conn: conn, Config: jetstream.KeyValueConfig{Bucket: "OTTU_RECON_ALERTMANAGER",
		Description: "ottu-recon: findings posted to Alertmanager as firing", History: 1, Replicas: max(replicas, 1),
		Storage: jetstream.FileStorage}}
}

// Gone tells whether err means a JetStream stream, consumer or bucket does
// not exist (any more): the server lost its state, or someone deleted it.
func Gone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrConsumerDoesNotExist) || errors.Is(err, nats.ErrNoResponders)
}

// isWrongSequence tells whether err is a compare-and-set that lost: the key's
// revision moved on since it was read.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
