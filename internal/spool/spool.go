// Package spool keeps deliveries on local disk while the stream is away, and
// forwards them in order once it is back.
//
// Ottu never retries a delivery that got an error status (docs/ottu-webhooks.md §5), so
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
// fsync'd: a crash leaves either the whole envelope or nothing. One process
// at a time owns the directory (an exclusive lock on its .lock file); sequence
// numbers start above every name in the directory and in failed/ and above
// the clock in nanoseconds, so a name is never reused, even after failed/ was
// emptied.
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
	"syscall"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Sentinel errors.
var (
	// ErrFull means the spool holds MaxBytes already.
	ErrFull = errors.New("spool full")
	// ErrLocked means another process owns the spool directory.
	ErrLocked = errors.New("spool directory is in use by another process")
	// ErrMissing means a queued entry's file is gone (removed by hand).
	ErrMissing = errors.New("spool entry missing")
	// ErrCorrupt means a queued entry's file cannot be decoded (truncated).
	ErrCorrupt = errors.New("spool entry corrupt")
)

const suffix = ".env"

// Spool is an ordered, crash-safe queue of envelopes in a directory. It is
// safe for concurrent use.
type Spool struct {
	dir      string
	maxBytes int64
	lock     *os.File
	// readFile reads an entry; tests replace it to fail as a disk can.
	readFile func(string) ([]byte, error)

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
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, lock: lock, readFile: os.ReadFile,
		next: max(uint64(time.Now().UnixNano()), 1)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("read spool dir: %w", err)
	}
	if failed, err := os.ReadDir(filepath.Join(dir, failedDir)); err == nil {
		for _, e := range failed {
			if seq, ok := parseName(e.Name()); ok {
				s.next = max(s.next, seq+1)
			}
		}
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			_ = os.Remove(filepath.Join(dir, name)) // an append a crash interrupted: never acknowledged
			continue
		}
		seq, ok := parseName(name)
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("stat spool file: %w", err)
		}
		s.queue = append(s.queue, entry{seq: seq, size: info.Size()})
		s.bytes += info.Size()
		s.next = max(s.next, seq+1)
	}
	sort.Slice(s.queue, func(i, j int) bool { return s.queue[i].seq < s.queue[j].seq })
	return s, nil
}

func parseName(name string) (uint64, bool) {
	if !strings.HasSuffix(name, suffix) {
		return 0, false
	}
	seq, err := strconv.ParseUint(strings.TrimSuffix(name, suffix), 10, 64)
	return seq, err == nil
}

const failedDir = "failed"

// lockDir takes an exclusive, non-blocking lock on dir/.lock, held for as
// long as the file stays open (the kernel releases it when the process dies).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open spool lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s (held by pid %s); give each ingest its own INGEST_SPOOL_DIR",
				ErrLocked, dir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock spool dir %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// Close releases the directory for another process.
func (s *Spool) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
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

	data, err := s.readFile(s.path(seq))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return seq, events.Envelope{}, true, fmt.Errorf("%w: %s", ErrMissing, s.path(seq))
	case err != nil: // EMFILE, EIO, ...: the file is there, try again later
		return seq, events.Envelope{}, true, fmt.Errorf("read spool file: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return seq, events.Envelope{}, true, fmt.Errorf("%w: %s: %v", ErrCorrupt, s.path(seq), err)
	}
	return seq, events.Envelope{
		ID: r.ID, Kind: events.Kind(r.Kind), ReceivedAt: r.ReceivedAt, Scheme: events.Scheme(r.Scheme),
		KeyIndex: r.KeyIndex, Reject: r.Reject, Body: r.Body,
	}, true, nil
}

// Skip drops the oldest entry seq from the queue without touching the disk,
// for an entry whose file is missing.
func (s *Spool) Skip(seq uint64) error { return s.dropOldest(seq, "skip", nil) }

// dropOldest drops the oldest entry, which must be seq, from the queue once
// do (what becomes of its file; nil for nothing) succeeded.
func (s *Spool) dropOldest(seq uint64, verb string, do func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 || s.queue[0].seq != seq {
		return fmt.Errorf("%s spool entry %d: not the oldest", verb, seq)
	}
	if do != nil {
		if err := do(); err != nil {
			return err
		}
	}
	s.bytes -= s.queue[0].size
	s.queue = s.queue[1:]
	return nil
}

// Remove deletes the envelope seq, which must be the oldest, once forwarded.
func (s *Spool) Remove(seq uint64) error {
	return s.dropOldest(seq, "remove", func() error {
		if err := os.Remove(s.path(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove spool file: %w", err)
		}
		return nil
	})
}

// Quarantine moves the oldest envelope seq aside into the "failed" folder, for
// an envelope the stream can never take (larger than its max payload). It stays
// on disk for an operator; it no longer blocks the queue.
func (s *Spool) Quarantine(seq uint64) error {
	return s.dropOldest(seq, "quarantine", func() error {
		failed := filepath.Join(s.dir, failedDir)
		if err := os.MkdirAll(failed, 0o750); err != nil {
			return fmt.Errorf("create failed dir: %w", err)
		}
		target := filepath.Join(failed, filepath.Base(s.path(seq)))
		for i := 1; ; i++ { // never overwrite what an operator has not looked at yet
			if _, err := os.Lstat(target); errors.Is(err, os.ErrNotExist) {
				break
			}
			target = filepath.Join(failed, fmt.Sprintf("%020d.%d%s", seq, i, suffix))
		}
		if err := os.Rename(s.path(seq), target); err != nil {
			return fmt.Errorf("quarantine spool file: %w", err)
		}
		return nil
	})
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
