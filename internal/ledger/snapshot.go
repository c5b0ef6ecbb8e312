package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/events"
)

// A snapshot is what a Fold knows of one parent's payment and operation
// deliveries, in a compact binary form (docs/performance.md, "Cost follows
// change"). The fold is a join of its rows (the latest by Rank, the states
// reached, the earliest and latest times, what each operation's deliveries
// said: each a maximum, a minimum or a union), so a snapshot restored and then
// given more rows, some of them rows it already holds, is the fold of all of
// them. A store keeps the snapshot of each parent a pass folded, and the next
// pass that reads the parent needs only its deliveries stored since.

// snapshotVersion changes whenever what a snapshot holds or how it is
// written changes: Restore refuses any other, and the store reads that
// parent whole.
const snapshotVersion = 1

// ErrSnapshotVersion is Restore's answer to a snapshot of another version.
var ErrSnapshotVersion = errors.New("ledger: snapshot of another version")

// Snapshot returns the snapshot of parent session as folded so far, or nil
// when no row of it was folded.
func (f *Fold) Snapshot(session string) []byte {
	p := f.parents[session]
	ops := f.byParent[session]
	if p == nil && len(ops) == 0 {
		return nil
	}
	if p == nil {
		p = &Parent{SessionID: session}
	}
	w := snapWriter{buf: make([]byte, 0, 128+96*len(ops))}
	w.uvarint(snapshotVersion)
	var flags uint64
	if p.HasPayment {
		flags |= 1
	}
	if p.Sandbox {
		flags |= 2
	}
	w.uvarint(flags)
	if p.HasPayment {
		w.rank(f.latest[session])
		w.str(p.OrderNo)
		w.str(p.State)
		w.amount(p.Amount)
		w.str(p.Currency)
		w.amount(p.RefundedAmount)
		w.amount(p.VoidedAmount)
		w.strs(slices.Sorted(maps.Keys(p.Reached)))
		w.time(p.AuthorizedAt)
		w.time(p.LastPaymentAt)
		children := slices.Sorted(maps.Keys(p.Listed))
		w.uvarint(uint64(len(children)))
		for _, c := range children {
			w.str(c)
			w.time(p.Listed[c])
		}
	}
	w.uvarint(uint64(len(ops)))
	for _, o := range ops {
		var flags uint64
		if o.set {
			flags |= 1
		}
		if o.op.Sandbox {
			flags |= 2
		}
		w.uvarint(flags)
		w.rank(o.latest)
		op := &o.op
		w.str(op.ReferenceNumber)
		w.str(op.ChildSessionID)
		w.str(op.Operation)
		w.str(op.Source)
		w.str(op.TxnState)
		w.str(op.TxnCurrency)
		w.amount(op.Amount)
		w.amount(op.TxnAmount)
		w.time(op.FirstReceived)
		w.time(op.QueuedSince)
		s := &op.Seen
		for _, list := range [][]string{s.Operations, s.Currencies, s.TxnStates, s.Sources, s.Children} {
			w.strs(list)
		}
		for _, r := range []Range{s.Amount, s.TxnAmount} {
			w.amount(r.Min)
			w.amount(r.Max)
			w.bool(r.Absent)
		}
	}
	return w.buf
}

// Restore makes a snapshot (Snapshot's) the fold of parent session so far.
// Call it before any row of that parent is added.
func (f *Fold) Restore(session string, b []byte) error {
	if f.parents[session] != nil || len(f.byParent[session]) > 0 {
		return fmt.Errorf("ledger: restore %s: rows of it were folded already", session)
	}
	r := snapReader{buf: b}
	if v := r.uvarint(); r.err == nil && v != snapshotVersion {
		return ErrSnapshotVersion
	}
	flags := r.uvarint()
	p := &Parent{SessionID: session, HasPayment: flags&1 != 0, Sandbox: flags&2 != 0}
	var latest Rank
	if p.HasPayment {
		latest = r.rank()
		p.OrderNo, p.State = r.str(), r.str()
		p.Amount, p.Currency = r.amount(), r.str()
		p.RefundedAmount, p.VoidedAmount = r.amount(), r.amount()
		if reached := r.strs(); len(reached) > 0 {
			p.Reached = make(map[string]bool, len(reached))
			for _, s := range reached {
				p.Reached[s] = true
			}
		}
		p.AuthorizedAt, p.LastPaymentAt = r.time(), r.time()
		if n := r.count(); n > 0 {
			p.Listed = make(map[string]time.Time, n)
			for range n {
				c := r.str()
				p.Listed[c] = r.time()
			}
		}
	}
	n := r.count()
	ops := make([]foldedOp, n)
	for i := range ops {
		o := &ops[i]
		flags := r.uvarint()
		o.session, o.set, o.op.Sandbox = session, flags&1 != 0, flags&2 != 0
		o.latest = r.rank()
		op := &o.op
		op.ReferenceNumber, op.ChildSessionID, op.Operation = r.str(), r.str(), r.str()
		op.Source, op.TxnState, op.TxnCurrency = r.str(), r.str(), r.str()
		op.Amount, op.TxnAmount = r.amount(), r.amount()
		op.FirstReceived, op.QueuedSince = r.time(), r.time()
		s := &op.Seen
		for _, list := range []*[]string{&s.Operations, &s.Currencies, &s.TxnStates, &s.Sources, &s.Children} {
			*list = r.strs()
		}
		for _, rg := range []*Range{&s.Amount, &s.TxnAmount} {
			rg.Min, rg.Max, rg.Absent = r.amount(), r.amount(), r.bool()
		}
	}
	if r.err == nil && len(r.buf) > 0 {
		r.err = errors.New("trailing bytes")
	}
	if r.err != nil {
		return fmt.Errorf("ledger: restore %s: %w", session, r.err)
	}
	if p.HasPayment {
		f.parents[session] = p
		f.latest[session] = latest
	}
	for i := range ops {
		o := f.newOp(session)
		*o = ops[i]
		f.ops[opKey{session, o.op.ReferenceNumber}] = o
	}
	f.lastPay, f.lastOp = nil, nil
	return nil
}

type snapWriter struct{ buf []byte }

func (w *snapWriter) uvarint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }
func (w *snapWriter) str(s string)     { w.uvarint(uint64(len(s))); w.buf = append(w.buf, s...) }
func (w *snapWriter) bool(b bool)      { w.uvarint(uint64(b2i(b))) }

func (w *snapWriter) strs(list []string) {
	w.uvarint(uint64(len(list)))
	for _, s := range list {
		w.str(s)
	}
}

// time is in Unix seconds, as the store keeps every time (0: not set).
func (w *snapWriter) time(t time.Time) {
	if t.IsZero() {
		w.uvarint(0)
		return
	}
	w.uvarint(uint64(t.Unix()))
}

func (w *snapWriter) rank(r Rank) {
	w.uvarint(uint64(b2i(r.Plausible)) | uint64(b2i(r.Terminal))<<1 | uint64(r.StateRank)<<2)
	w.uvarint(uint64(r.Timestamp))
	w.uvarint(uint64(r.Received))
	w.uvarint(r.Seq)
}

// amount keeps the exact decimal, its exponent included (5.000 stays 5.000).
func (w *snapWriter) amount(a events.Amount) {
	if !a.Valid {
		w.uvarint(0)
		return
	}
	c := a.Decimal.Coefficient()
	sign := uint64(1)
	if c.Sign() < 0 {
		sign = 2
	}
	w.uvarint(sign)
	w.buf = binary.AppendVarint(w.buf, int64(a.Decimal.Exponent()))
	abs := new(big.Int).Abs(c).Bytes()
	w.uvarint(uint64(len(abs)))
	w.buf = append(w.buf, abs...)
}

type snapReader struct {
	buf []byte
	err error
}

func (r *snapReader) fail(what string) {
	if r.err == nil {
		r.err = errors.New("short or bad " + what)
	}
	r.buf = nil
}

func (r *snapReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.buf)
	if n <= 0 {
		r.fail("number")
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

// count is a length, bounded by what is left to read.
func (r *snapReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.buf)) {
		r.fail("length")
		return 0
	}
	return int(n)
}

func (r *snapReader) bytes() []byte {
	n := r.count()
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

func (r *snapReader) str() string { return string(r.bytes()) }
func (r *snapReader) bool() bool  { return r.uvarint() != 0 }

func (r *snapReader) strs() []string {
	n := r.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
}

func (r *snapReader) time() time.Time {
	v := r.uvarint()
	if v > 1<<32-1 {
		r.fail("time")
		return time.Time{}
	}
	return unixTime(uint32(v))
}

func (r *snapReader) rank() Rank {
	bits := r.uvarint()
	ts, received, seq := r.uvarint(), r.uvarint(), r.uvarint()
	if bits>>2 > 255 || ts > 1<<32-1 || received > 1<<32-1 {
		r.fail("rank")
		return Rank{}
	}
	return Rank{Plausible: bits&1 != 0, Terminal: bits&2 != 0, StateRank: uint8(bits >> 2),
		Timestamp: uint32(ts), Received: uint32(received), Seq: seq}
}

func (r *snapReader) amount() events.Amount {
	sign := r.uvarint()
	if sign == 0 {
		return events.Amount{}
	}
	exp, n := binary.Varint(r.buf)
	if n <= 0 || sign > 2 || exp < -1<<31 || exp > 1<<31-1 {
		r.fail("amount")
		return events.Amount{}
	}
	r.buf = r.buf[n:]
	c := new(big.Int).SetBytes(r.bytes())
	if sign == 2 {
		c.Neg(c)
	}
	return events.Amount{Decimal: decimal.NewFromBigInt(c, int32(exp)), Valid: true}
}
