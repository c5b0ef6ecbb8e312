package spool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// Publisher publishes an envelope to the stream and returns once the stream
// has stored it.
type Publisher interface {
	Publish(ctx context.Context, env events.Envelope) (events.PublishResult, error)
}

// Durable publishes straight to Next while the spool is empty and falls back to
// the spool otherwise; a forwarder drains the spool in order. Set the exported
// fields, then Open; Close stops it.
type Durable struct {
	Next           Publisher
	Spool          *Spool
	PublishTimeout time.Duration // per attempt; default 2s
	RetryMin       time.Duration // forwarder back-off after a failure; default 100ms
	RetryMax       time.Duration // default 5s
	// IsPermanent, if set, classifies a publish error that retrying cannot cure
	// (a message larger than the stream accepts): Publish returns it, and the
	// forwarder sets such an envelope aside instead of retrying it forever.
	IsPermanent func(error) bool
	// OnForwardError, if set, is told about each failed forward attempt and
	// what became of the entry: Retried (the forwarder tries again with
	// back-off), SetAside (moved to failed/: too large for the stream, or
	// truncated) or Skipped (its file is gone).
	OnForwardError func(env events.Envelope, err error, outcome Outcome)
	// OnForwarded, if set, is told about each envelope forwarded from the spool.
	OnForwarded func(env events.Envelope, res events.PublishResult)

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	drain  sync.Mutex // one drainer at a time
}

var _ Publisher = (*Durable)(nil)

// Outcome is what became of a spool entry that could not be forwarded.
type Outcome string

// The outcomes.
const (
	Retried  Outcome = "retried"
	SetAside Outcome = "set_aside"
	Skipped  Outcome = "skipped"
)

// Open starts the forwarder, which first drains what an earlier process left.
func (d *Durable) Open() error {
	if d.Next == nil || d.Spool == nil {
		return errors.New("spool: Durable needs Next and Spool")
	}
	d.PublishTimeout = cmp.Or(d.PublishTimeout, 2*time.Second)
	d.RetryMin = cmp.Or(d.RetryMin, 100*time.Millisecond)
	d.RetryMax = cmp.Or(d.RetryMax, 5*time.Second)
	d.kick = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Add(1)
	go d.forward(ctx)
	d.signal()
	return nil
}

// Publish stores env durably: in the stream, or in the spool. Spooled in the
// result says which.
func (d *Durable) Publish(ctx context.Context, env events.Envelope) (events.PublishResult, error) {
	if d.Spool.Len() == 0 {
		pctx, cancel := context.WithTimeout(ctx, d.PublishTimeout)
		res, err := d.Next.Publish(pctx, env)
		cancel()
		if err == nil {
			return res, nil
		}
		if d.permanent(err) {
			return events.PublishResult{}, err
		}
	}
	if err := d.Spool.Append(env); err != nil {
		return events.PublishResult{}, fmt.Errorf("spool envelope: %w", err)
	}
	d.signal()
	return events.PublishResult{Spooled: true}, nil
}

func (d *Durable) permanent(err error) bool { return d.IsPermanent != nil && d.IsPermanent(err) }

func (d *Durable) signal() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *Durable) forward(ctx context.Context) {
	defer d.wg.Done()
	wait := d.RetryMin
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-timer.C:
		}
		if err := d.Drain(ctx); err != nil {
			timer.Reset(wait)
			wait = min(wait*2, d.RetryMax)
			continue
		}
		wait = d.RetryMin
	}
}

// Drain forwards spooled envelopes, oldest first, until the spool is empty or
// a publish fails or ctx ends. The forwarder calls it; Close calls it once more.
func (d *Durable) Drain(ctx context.Context) error {
	d.drain.Lock()
	defer d.drain.Unlock()
	for ctx.Err() == nil {
		seq, env, ok, err := d.Spool.Oldest()
		if !ok {
			return nil
		}
		switch {
		case errors.Is(err, ErrMissing):
			// Removed by hand: nothing to forward, nothing to keep.
			d.report(env, err, Skipped)
			if serr := d.Spool.Skip(seq); serr != nil {
				return serr
			}
			continue
		case errors.Is(err, ErrCorrupt):
			// Truncated: it can never be forwarded; kept for forensics.
			d.report(env, err, SetAside)
			if qerr := d.Spool.Quarantine(seq); qerr != nil {
				return qerr
			}
			continue
		case err != nil:
			// A read error the disk may recover from: never set aside.
			d.report(env, err, Retried)
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, d.PublishTimeout)
		res, err := d.Next.Publish(pctx, env)
		cancel()
		switch {
		case err != nil && d.permanent(err):
			d.report(env, err, SetAside)
			if qerr := d.Spool.Quarantine(seq); qerr != nil {
				return qerr
			}
		case err != nil:
			d.report(env, err, Retried)
			return err
		default:
			if err := d.Spool.Remove(seq); err != nil {
				return err
			}
			if d.OnForwarded != nil {
				d.OnForwarded(env, res)
			}
		}
	}
	return ctx.Err()
}

func (d *Durable) report(env events.Envelope, err error, outcome Outcome) {
	if d.OnForwardError != nil {
		d.OnForwardError(env, err, outcome)
	}
}

// Close stops the forwarder after one last attempt, bounded by ctx, to drain
// the spool. What is left stays on disk for the next start.
func (d *Durable) Close(ctx context.Context) error {
	if d.cancel == nil {
		return nil
	}
	d.cancel()
	d.wg.Wait()
	if err := d.Drain(ctx); err != nil {
		return fmt.Errorf("drain spool (%d left on disk): %w", d.Spool.Len(), err)
	}
	return nil
}
