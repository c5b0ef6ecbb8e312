// Package natstest gives tests a real, embedded nats-server with JetStream,
// and the logger tests hand to the daemons.
package natstest

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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

// MustOpenServerFromConfig starts a nats-server from a configuration file
// (users, permissions, limits as written there; its $VARIABLES come from the
// environment), listening on a free loopback port and storing in a
// temporary directory whatever the file says, with no monitoring port. It
// returns the client URL.
func MustOpenServerFromConfig(tb testing.TB, path string) string {
	tb.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatalf("load %s: %v", path, err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
	opts.StoreDir, opts.NoSigs, opts.NoLog = tb.TempDir(), true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		tb.Fatal("nats server from config not ready after 10s")
	}
	tb.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}
