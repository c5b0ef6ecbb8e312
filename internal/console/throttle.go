package console

import (
	"strings"
	"sync"
	"time"
)

// Throttle slows down guessing: after Free failed sign-ins for one name (or
// four times as many from one address, which colleagues may share), within
// Window, each further attempt for it must wait, twice as long after each
// failure, up to Max. A success clears the name's
// count. It is kept in memory, per replica: a guesser spreading attempts
// over replicas gets each replica's allowance, no more.
type Throttle struct {
	Free   int           // failures allowed without waiting (default 5)
	Window time.Duration // how long a failure counts (default 15 minutes)
	Max    time.Duration // the longest wait (default 15 minutes)
	Now    func() time.Time

	mu   sync.Mutex
	keys map[string]*strikes
}

type strikes struct {
	n     int
	last  time.Time
	until time.Time
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Attempt counts an attempt against each of keys before it is checked, so
// that attempts in flight count too, and returns 0; or, when one of keys
// must still wait, counts nothing and returns how long.
func (t *Throttle) Attempt(keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	var wait time.Duration
	for _, k := range keys {
		if s := t.keys[k]; s != nil && s.until.After(now) {
			wait = max(wait, s.until.Sub(now))
		}
	}
	if wait > 0 {
		return wait
	}
	t.count(now, keys)
	return 0
}

func (t *Throttle) count(now time.Time, keys []string) {
	if t.keys == nil {
		t.keys = map[string]*strikes{}
	}
	free, window, maxWait := t.Free, t.Window, t.Max
	if free <= 0 {
		free = 5
	}
	if window <= 0 {
		window = 15 * time.Minute
	}
	if maxWait <= 0 {
		maxWait = 15 * time.Minute
	}
	for k, s := range t.keys { // forget what no longer counts
		if now.Sub(s.last) > window && !s.until.After(now) {
			delete(t.keys, k)
		}
	}
	for _, k := range keys {
		s := t.keys[k]
		if s == nil {
			s = &strikes{}
			t.keys[k] = s
		}
		s.n++
		s.last = now
		allowed := free
		if strings.HasPrefix(k, "ip:") {
			allowed = 4 * free
		}
		if over := s.n - allowed; over > 0 {
			wait := time.Second << min(over-1, 20)
			s.until = now.Add(min(wait, maxWait))
		}
	}
}

// Forgive takes back the attempt counted against key: it succeeded.
func (t *Throttle) Forgive(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.keys[key]; s != nil && s.n > 0 {
		s.n--
	}
}

// Succeed clears key's failures.
func (t *Throttle) Succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, key)
}
