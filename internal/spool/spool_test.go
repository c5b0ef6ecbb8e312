package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
	"github.com/ottu-recon/ottu-recon/internal/spool"
)

// fakePublisher records what it stored; fail makes it refuse.
type fakePublisher struct {
	mu     sync.Mutex
	fail   error
	stored []string
}

func (f *fakePublisher) Publish(_ context.Context, env events.Envelope) (events.PublishResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return events.PublishResult{}, f.fail
	}
	f.stored = append(f.stored, env.ID)
	return events.PublishResult{Sequence: uint64(len(f.stored))}, nil
}

func (f *fakePublisher) setFail(err error) { f.mu.Lock(); f.fail = err; f.mu.Unlock() }
func (f *fakePublisher) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stored...)
}

func env(i int) events.Envelope {
	return events.Envelope{ID: fmt.Sprintf("id-%03d", i), Kind: events.KindPayment,
		ReceivedAt: time.Unix(int64(i), 0).UTC(), Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}
}

func MustOpenSpool(tb testing.TB, dir string) *spool.Spool {
	tb.Helper()
	s, err := spool.Open(dir, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSpool_AppendReopen(t *testing.T) {
	dir := t.TempDir()
	s := MustOpenSpool(t, dir)
	for i := range 3 {
		if err := s.Append(env(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A crash mid-append leaves a temp file: never acknowledged, dropped at Open.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = MustOpenSpool(t, dir)
	if got := s.Len(); got != 3 {
		t.Fatalf("Len after reopen: got %d, want 3", got)
	}
	seq, e, ok, err := s.Oldest()
	if err != nil || !ok || e.ID != "id-000" || string(e.Body) != `{"n":0}` || !e.ReceivedAt.Equal(time.Unix(0, 0)) {
		t.Fatalf("Oldest: got %+v %v %v", e, ok, err)
	}
	if err := s.Remove(seq + 1); err == nil {
		t.Fatal("Remove of a non-oldest entry must fail")
	}
	if err := s.Remove(seq); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(env(3)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		seq, e, ok, err := s.Oldest()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, e.ID)
		if err := s.Remove(seq); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[id-001 id-002 id-003]" {
		t.Fatalf("order: got %v", got)
	}
}

func TestSpool_ErrFull(t *testing.T) {
	s, err := spool.Open(t.TempDir(), 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(env(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(events.Envelope{ID: "big", Body: make([]byte, 200)}); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("got %v, want ErrFull", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	nettest.WaitFor(t, what, 10*time.Second, cond)
}

func TestDurable_SpoolsAndForwardsInOrder(t *testing.T) {
	pub := &fakePublisher{}
	d := &spool.Durable{Next: pub, Spool: MustOpenSpool(t, t.TempDir()), RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	ctx := context.Background()

	res, err := d.Publish(ctx, env(0))
	if err != nil || res.Spooled {
		t.Fatalf("direct publish: got %+v, %v", res, err)
	}
	pub.setFail(errors.New("nats down"))
	for i := 1; i <= 5; i++ {
		res, err := d.Publish(ctx, env(i))
		if err != nil || !res.Spooled {
			t.Fatalf("publish %d while down: got %+v, %v; want spooled", i, res, err)
		}
	}
	if got := d.Spool.Len(); got != 5 {
		t.Fatalf("backlog: got %d, want 5", got)
	}
	pub.setFail(nil)
	waitFor(t, "backlog to drain", func() bool { return d.Spool.Len() == 0 })
	if got := fmt.Sprint(pub.ids()); got != "[id-000 id-001 id-002 id-003 id-004 id-005]" {
		t.Fatalf("forwarded order: got %s", got)
	}
}

func TestDurable_QuarantinesPermanentFailure(t *testing.T) {
	pub := &fakePublisher{}
	dir := t.TempDir()
	var quarantined []string
	var mu sync.Mutex
	errTooBig := errors.New("too big")
	d := &spool.Durable{Next: pub, Spool: MustOpenSpool(t, dir), RetryMin: time.Millisecond,
		IsPermanent: func(err error) bool { return errors.Is(err, errTooBig) },
		OnForwardError: func(e events.Envelope, err error, o spool.Outcome) {
			if o == spool.SetAside {
				mu.Lock()
				quarantined = append(quarantined, e.ID)
				mu.Unlock()
			}
		}}
	// One envelope left by an earlier process, which the stream refuses forever.
	if err := d.Spool.Append(env(7)); err != nil {
		t.Fatal(err)
	}
	pub.setFail(fmt.Errorf("publish: %w", errTooBig))
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "quarantine", func() bool { return d.Spool.Len() == 0 })
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "failed")); err != nil {
		t.Fatalf("failed dir: %v", err)
	}
	if fmt.Sprint(quarantined) != "[id-007]" {
		t.Fatalf("quarantined: got %v", quarantined)
	}
}

// TestSpool_Lock: two processes (here, two opens) on one directory would
// overwrite each other's files; the second is refused with a clear error.
func TestSpool_Lock(t *testing.T) {
	dir := t.TempDir()
	s := MustOpenSpool(t, dir)
	if _, err := spool.Open(dir, 0); !errors.Is(err, spool.ErrLocked) {
		t.Fatalf("second open: got %v, want ErrLocked", err)
	}
	s.Close()
	again := MustOpenSpool(t, dir)
	again.Close()
}

// forwarder starts a Durable over dir and records what became of each entry.
type forwarder struct {
	*spool.Durable
	pub      *fakePublisher
	mu       sync.Mutex
	outcomes map[spool.Outcome]int
}

func (f *forwarder) count(o spool.Outcome) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outcomes[o]
}

func startForwarder(t *testing.T, s *spool.Spool) *forwarder {
	f := &forwarder{pub: &fakePublisher{}, outcomes: map[spool.Outcome]int{}}
	f.Durable = &spool.Durable{Next: f.pub, Spool: s, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		OnForwardError: func(_ events.Envelope, _ error, o spool.Outcome) {
			f.mu.Lock()
			f.outcomes[o]++
			f.mu.Unlock()
		}}
	if err := f.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close(context.Background()) })
	return f
}

// spoolFiles lists the entry files in dir, oldest first.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.env"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestDurable_MissingAndTruncated: an entry removed by hand is skipped, a
// truncated one set aside in failed/; neither blocks the others.
func TestDurable_MissingAndTruncated(t *testing.T) {
	dir := t.TempDir()
	s := MustOpenSpool(t, dir)
	for i := range 4 {
		if err := s.Append(env(i)); err != nil {
			t.Fatal(err)
		}
	}
	files := spoolFiles(t, dir)
	if err := os.Remove(files[1]); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(files[2])
	if err := os.WriteFile(files[2], data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	f := startForwarder(t, s)
	waitFor(t, "the spool to drain", func() bool { return f.Spool.Len() == 0 })
	if got := fmt.Sprint(f.pub.ids()); got != "[id-000 id-003]" {
		t.Fatalf("forwarded %s, want [id-000 id-003]", got)
	}
	if f.count(spool.Skipped) != 1 || f.count(spool.SetAside) != 1 {
		t.Fatalf("outcomes %v", f.outcomes)
	}
	if kept := spoolFiles(t, filepath.Join(dir, "failed")); len(kept) != 1 {
		t.Fatalf("failed/: %v, want the truncated entry", kept)
	}
}

// TestSpool_NamesNeverReused: after a restart with an empty spool, and even
// after failed/ was emptied, a new entry never takes the name of an old one.
func TestSpool_NamesNeverReused(t *testing.T) {
	dir := t.TempDir()
	s := MustOpenSpool(t, dir)
	if err := s.Append(env(1)); err != nil {
		t.Fatal(err)
	}
	seq, _, _, _ := s.Oldest()
	if err := s.Quarantine(seq); err != nil {
		t.Fatal(err)
	}
	s.Close()
	failed := spoolFiles(t, filepath.Join(dir, "failed"))
	before, _ := os.ReadFile(failed[0])

	s = MustOpenSpool(t, dir)
	if err := s.Append(env(2)); err != nil {
		t.Fatal(err)
	}
	seq2, _, _, _ := s.Oldest()
	if seq2 <= seq {
		t.Fatalf("sequence went back: %d after %d", seq2, seq)
	}
	if err := s.Quarantine(seq2); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(failed[0])
	if string(after) != string(before) {
		t.Fatal("a failed/ entry was overwritten")
	}
	if n := len(spoolFiles(t, filepath.Join(dir, "failed"))); n != 2 {
		t.Fatalf("failed/ holds %d entries, want 2", n)
	}
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, "failed")); err != nil {
		t.Fatal(err)
	}
	s = MustOpenSpool(t, dir)
	if err := s.Append(env(3)); err != nil {
		t.Fatal(err)
	}
	if seq3, _, _, _ := s.Oldest(); seq3 <= seq2 {
		t.Fatalf("sequence went back after failed/ was emptied: %d after %d", seq3, seq2)
	}
}
