package httpserver

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// connLimiter bounds the connections a server holds to max, counting what
// works, not what waits: when a new client needs a slot and every slot is
// taken, a keep-alive connection sitting idle between requests (or a
// connection that has sent nothing for staleNew) is closed to make room. Only
// when every connection is busy with a request does a new one wait in the
// kernel's backlog. So idle clients cannot lock Ottu out.
type connLimiter struct {
	net.Listener
	max int

	mu      sync.Mutex
	conns   map[net.Conn]*connInfo
	changed chan struct{} // closed and replaced when a connection goes idle or closes
	closed  bool
}

type connInfo struct {
	state http.ConnState
	since time.Time
}

// staleNew is how long a connection may stay open without sending a
// request before it counts as idle when its slot is needed.
const staleNew = time.Second

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, conns: map[net.Conn]*connInfo{}, changed: make(chan struct{})}
}

// Accept waits for a free slot (making one from an idle connection when it
// can), then accepts.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
		if len(l.conns) < l.max || l.evict() {
			l.mu.Unlock()
			break
		}
		wait := l.changed
		l.mu.Unlock()
		t := time.NewTimer(staleNew / 4) // a new connection may turn stale meanwhile
		select {
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c] = &connInfo{state: http.StateNew, since: time.Now()}
	l.mu.Unlock()
	return c, nil
}

// evict closes the connection idle the longest, or one that sent nothing for
// staleNew; false when every connection is busy. Called with mu held.
func (l *connLimiter) evict() bool {
	var victim net.Conn
	var oldest time.Time
	now := time.Now()
	for c, info := range l.conns {
		idle := info.state == http.StateIdle || (info.state == http.StateNew && now.Sub(info.since) >= staleNew)
		if idle && (victim == nil || info.since.Before(oldest)) {
			victim, oldest = c, info.since
		}
	}
	if victim == nil {
		return false
	}
	delete(l.conns, victim) // its slot is free now; the server sees it close
	_ = victim.Close()
	return true
}

// track is the server's ConnState hook.
func (l *connLimiter) track(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	info, ok := l.conns[c]
	switch state {
	case http.StateClosed, http.StateHijacked:
		if ok {
			delete(l.conns, c)
		}
	default:
		if !ok {
			return // evicted already
		}
		info.state, info.since = state, time.Now()
		if state != http.StateIdle {
			return
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *connLimiter) Close() error {
	l.mu.Lock()
	l.closed = true
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	return l.Listener.Close()
}

// maxBodyBytes is the most a request body may hold: what a request reserves
// of the bytes being read at once when it does not say its length.
const maxBodyBytes = 1 << 20

// limitRequests bounds the requests in progress at once (over HTTP/2, one
// connection carries many) and the bytes of request bodies being read at
// once. A request waits for its turn for as long as its client does.
func limitRequests(next http.Handler, requests int, bodyBytes int64) http.Handler {
	inFlight := semaphore.NewWeighted(int64(requests))
	reading := semaphore.NewWeighted(bodyBytes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := inFlight.Acquire(ctx, 1); err != nil {
			return // the client went away while waiting
		}
		defer inFlight.Release(1)
		if r.Method == http.MethodPost {
			n := int64(maxBodyBytes)
			if r.ContentLength >= 0 && r.ContentLength < n {
				n = r.ContentLength
			}
			n = min(n, bodyBytes)
			if err := reading.Acquire(ctx, n); err != nil {
				return
			}
			r.Body = &releasingBody{ReadCloser: r.Body, release: func() { reading.Release(n) }}
			defer r.Body.Close()
		}
		next.ServeHTTP(w, r)
	})
}

// releasingBody gives its bytes back to the budget when it is closed or read
// to the end, whichever comes first.
type releasingBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	b.once.Do(b.release)
	return b.ReadCloser.Close()
}
