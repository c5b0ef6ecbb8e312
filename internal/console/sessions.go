package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Session is a signed-in person. The browser holds only the session's token
// (a random 256-bit value, in an HttpOnly cookie); the store keeps the
// session under a hash of it, so a copy of the store signs nobody in.
type Session struct {
	User    string    `json:"user"`
	Role    Role      `json:"role"`
	CSRF    string    `json:"csrf"` // the token every form of this session carries
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// Sessions keeps sessions. KVSessions keeps them in NATS, where every
// replica of reconcile finds them.
type Sessions interface {
	Put(ctx context.Context, key string, s Session) error
	Get(ctx context.Context, key string) (Session, bool, error)
	Delete(ctx context.Context, key string) error
}

// SessionBucket is the NATS key-value bucket of console sessions.
const SessionBucket = "OTTU_RECON_CONSOLE_SESSIONS"

// KVSessions keeps sessions in a JetStream key-value bucket whose entries
// expire after TTL (the bucket's max age): a session lives at most TTL,
// whichever replica serves the person, and signing out ends it everywhere.
type KVSessions struct {
	JS       jetstream.JetStream
	TTL      time.Duration
	Replicas int

	mu sync.Mutex
	kv jetstream.KeyValue
}

func (s *KVSessions) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.JS.KeyValue(ctx, SessionBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SessionBucket, TTL: s.TTL,
			Replicas: max(s.Replicas, 1), Storage: jetstream.FileStorage, Description: "ottu-recon console sessions"})
	}
	if err != nil {
		return nil, fmt.Errorf("console sessions bucket: %w", err)
	}
	s.kv = kv
	return kv, nil
}

// forget drops the bucket handle after an error that may mean it is gone
// (NATS rebuilt empty): the next call looks it up, or creates it, again.
func (s *KVSessions) forget(err error) {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		s.mu.Lock()
		s.kv = nil
		s.mu.Unlock()
	}
}

// Put stores s under key.
func (s *KVSessions) Put(ctx context.Context, key string, sess Session) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		s.forget(err)
		return fmt.Errorf("store session: %w", err)
	}
	return nil
}

// Get returns the session under key; false if there is none.
func (s *KVSessions) Get(ctx context.Context, key string) (Session, bool, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return Session{}, false, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Session{}, false, nil
	}
	if err != nil {
		s.forget(err)
		return Session{}, false, fmt.Errorf("read session: %w", err)
	}
	var sess Session
	if err := json.Unmarshal(e.Value(), &sess); err != nil {
		return Session{}, false, nil // not a session this version wrote: signed out
	}
	return sess, true, nil
}

// Delete ends the session under key.
func (s *KVSessions) Delete(ctx context.Context, key string) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	if err := kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.forget(err)
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// newToken returns a random 256-bit token, hex.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sessionKey is the key a session is stored under: a hash of its token.
func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
