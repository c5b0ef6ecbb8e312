package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Session is a signed-in person. The browser holds only the session's token
// (a random 256-bit value, in an HttpOnly cookie); the store keeps the
// session under a hash of it, so a copy of the store signs nobody in.
type Session struct {
	User string `json:"user"`
	Role Role   `json:"role"`
	CSRF string `json:"csrf"` // the token every form of this session carries
	// Credential is a digest of the credential the session was opened with
	// (User.Credential): a new password ends the session.
	Credential string    `json:"credential"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
}

// Sessions keeps sessions. KVSessions keeps them in NATS, where every
// replica of reconcile finds them.
type Sessions interface {
	Put(ctx context.Context, key string, s Session) error
	Get(ctx context.Context, key string) (Session, bool, error)
	Delete(ctx context.Context, key string) error
}

// KV is where sessions are kept, as bytes under keys: a NATS key-value
// bucket whose entries expire (nats.Bucket, nats.SessionsBucket), so that
// every replica of reconcile finds them and a session lives at most the
// bucket's TTL.
type KV interface {
	Put(ctx context.Context, key string, value []byte) error
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Delete(ctx context.Context, key string) error
}

// KVSessions keeps sessions as JSON in a KV: signing out ends a session
// everywhere.
type KVSessions struct{ KV KV }

// Put stores s under key.
func (s *KVSessions) Put(ctx context.Context, key string, sess Session) error {
	b, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	if err := s.KV.Put(ctx, key, b); err != nil {
		return fmt.Errorf("store session: %w", err)
	}
	return nil
}

// Get returns the session under key; false if there is none.
func (s *KVSessions) Get(ctx context.Context, key string) (Session, bool, error) {
	b, ok, err := s.KV.Get(ctx, key)
	if err != nil {
		return Session{}, false, fmt.Errorf("read session: %w", err)
	}
	var sess Session
	if !ok || json.Unmarshal(b, &sess) != nil {
		return Session{}, false, nil // none, or not a session this version wrote: signed out
	}
	return sess, true, nil
}

// Delete ends the session under key.
func (s *KVSessions) Delete(ctx context.Context, key string) error {
	if err := s.KV.Delete(ctx, key); err != nil {
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
