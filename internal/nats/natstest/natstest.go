// Package natstest gives tests a real, embedded nats-server with JetStream,
// and the logger tests hand to the daemons.
package natstest

import (
	"os"
	"testing"

	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/nats"
)

// Logger writes to the test's log when TEST_LOG is set, else nowhere.
func Logger(tb testing.TB) zerolog.Logger {
	if os.Getenv("TEST_LOG") != "" {
		return zerolog.New(zerolog.NewTestWriter(tb))
	}
	return zerolog.Nop()
}

// MustOpenServer starts a nats-server with JetStream on listen ("" for a
// free loopback port; a fixed address restarts one) storing in dir ("" for a
// temporary directory), and stops it when the test ends.
func MustOpenServer(tb testing.TB, listen, dir string) *nats.Server {
	tb.Helper()
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if dir == "" {
		dir = tb.TempDir()
	}
	s := &nats.Server{Listen: listen, StoreDir: dir, Logger: Logger(tb)}
	if err := s.Open(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}
