// Package spool keeps deliveries on local disk while the stream is away, and
// forwards them in order once it is back.
//
// Ottu never retries a delivery that got an error status (WEBHOOKS.md §5), so
// ingest must answer 200 for an authentic webhook even when JetStream is down
// or slow. Durable does that: it publishes straight to the stream while the
// spool is empty, and otherwise (or when that publish fails) appends the
// envelope to the spool, fsync'd, and answers. A forwarder goroutine drains
// the spool oldest first; the stream's de-duplication by delivery id makes a
// message that was stored by a publish that timed out, and then forwarded
// again, harmless.
//
// The spool is a directory with one file per envelope, named by a sequence
// number, written to a temporary name, fsync'd, renamed and the directory
// fsync'd: a crash leaves either the whole envelope or nothing.
package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// ErrFull means the spool holds MaxBytes already.
var ErrFull = errors.New("spool full")

const suffix = ".env"

// Spool is an ordered, crash-safe queue of envelopes in a directory. It is
// safe for concurrent use.
type Spool struct {
	dir      string
	maxBytes int64

	mu    sync.Mutex
	next  uint64
	queue []entry // oldest first
	bytes int64
}

type entry struct {
	seq  uint64
	size int64
}

// record is the on-disk form of an envelope; its field names are a file format.
type record struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
	Scheme     string    `json:"scheme,omitempty"`
	KeyIndex   int       `json:"key_index"`
	Reject     string    `json:"reject,omitempty"`
	Body       []byte    `json:"body"`
}

// Open opens (creating it if needed) the spool in dir and loads what an earlier
// process left there. maxBytes <= 0 means no limit.
func Open(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create spool dir: %w", err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, next: 1}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read spool dir: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, name)) // an append a crash interrupted: never acknowledged
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, suffix), 10, 64)
		if err != nil || !strings.HasSuffix(name, suffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("stat spool file: %w", err)
		}
		s.queue = append(s.queue, entry{seq: seq, size: info.Size()})
		s.bytes += info.Size()
		s.next = max(s.next, seq+1)
	}
	sort.Slice(s.queue, func(i, j int) bool { return s.queue[i].seq < s.queue[j].seq })
	return s, nil
}

// Len is the number of envelopes waiting.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Bytes is the size of the envelopes waiting.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

func (s *Spool) path(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", seq, suffix))
}

// Append stores env durably at the end of the queue. It returns only once the
// envelope is on disk.
func (s *Spool) Append(env events.Envelope) error {
	data, err := json.Marshal(record{
		ID: env.ID, Kind: string(env.Kind), ReceivedAt: env.ReceivedAt, Scheme: string(env.Scheme),
		KeyIndex: env.KeyIndex, Reject: env.Reject, Body: env.Body,
	})
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	// The lock is held across the write so the queue order is the file order.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxBytes > 0 && s.bytes+int64(len(data)) > s.maxBytes {
		return ErrFull
	}
	seq := s.next
	if err := writeFileSync(s.dir, s.path(seq), data); err != nil {
		return err
	}
	s.next++
	s.queue = append(s.queue, entry{seq: seq, size: int64(len(data))})
	s.bytes += int64(len(data))
	return nil
}

func writeFileSync(dir, path string, data []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("create spool file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write spool file: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Oldest returns the oldest waiting envelope and its sequence number.
func (s *Spool) Oldest() (seq uint64, env events.Envelope, ok bool, err error) {
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.mu.Unlock()
		return 0, events.Envelope{}, false, nil
	}
	seq = s.queue[0].seq
	s.mu.Unlock()

	data, err := os.ReadFile(s.path(seq))
	if err != nil {
		return seq, events.Envelope{}, true, fmt.Errorf("read spool file: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return seq, events.Envelope{}, true, fmt.Errorf("decode spool file %d: %w", seq, err)
	}
	return seq, events.Envelope{
		ID: r.ID, Kind: events.Kind(r.Kind), ReceivedAt: r.ReceivedAt, Scheme: events.Scheme(r.Scheme),
		KeyIndex: r.KeyIndex, Reject: r.Reject, Body: r.Body,
	}, true, nil
}

// Remove deletes the envelope seq, which must be the oldest, once forwarded.
func (s *Spool) Remove(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 || s.queue[0].seq != seq {
		return fmt.Errorf("remove spool entry %d: not the oldest", seq)
	}
	if err := os.Remove(s.path(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove spool file: %w", err)
	}
	s.bytes -= s.queue[0].size
	s.queue = s.queue[1:]
	return nil
}

// Quarantine moves the oldest envelope seq aside into the "failed" folder, for
// an envelope the stream can never take (larger than its max payload). It stays
// on disk for an operator; it no longer blocks the queue.
func (s *Spool) Quarantine(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 || s.queue[0].seq != seq {
		return fmt.Errorf("quarantine spool entry %d: not the oldest", seq)
	}
	failed := filepath.Join(s.dir, "failed")
	if err := os.MkdirAll(failed, 0o750); err != nil {
		return fmt.Errorf("create failed dir: %w", err)
	}
	if err := os.Rename(s.path(seq), filepath.Join(failed, filepath.Base(s.path(seq)))); err != nil {
		return fmt.Errorf("quarantine spool file: %w", err)
	}
	s.bytes -= s.queue[0].size
	s.queue = s.queue[1:]
	return nil
}

// CheckWritable reports whether a new envelope could be stored now.
func (s *Spool) CheckWritable() error {
	s.mu.Lock()
	full := s.maxBytes > 0 && s.bytes >= s.maxBytes
	s.mu.Unlock()
	if full {
		return ErrFull
	}
	f, err := os.CreateTemp(s.dir, ".tmp-probe-")
	if err != nil {
		return fmt.Errorf("spool not writable: %w", err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}
