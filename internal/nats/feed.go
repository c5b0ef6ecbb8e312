package nats

import (
	"errors"

	"github.com/nats-io/nats.go"
)

// ChangesSubject is where the replicas tell each other what changed in the
// findings (a pass's new versions, a person's actions): core NATS, nothing
// kept. A replica that misses a message (disconnected, or started after it)
// catches up at its next full read (docs/console.md, "Replicas").
const ChangesSubject = "recon.console.changes"

// Feed publishes to and listens on a core NATS subject.
type Feed struct {
	Conn    *Conn
	Subject string
}

// Publish sends data to every replica listening, this one included.
func (f Feed) Publish(data []byte) error {
	if f.Conn == nil || f.Conn.nc == nil {
		return errors.New("nats is not open")
	}
	return f.Conn.nc.Publish(f.Subject, data)
}

// Listen hands each message's data to fn, in order, until stop is called;
// while the connection is down it waits, and resumes when it is back.
func (f Feed) Listen(fn func(data []byte)) (stop func(), err error) {
	if f.Conn == nil || f.Conn.nc == nil {
		return nil, errors.New("nats is not open")
	}
	sub, err := f.Conn.nc.Subscribe(f.Subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
