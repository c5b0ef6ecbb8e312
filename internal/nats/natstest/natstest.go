// Package natstest gives tests a real, embedded nats-server with JetStream,
// and the logger tests hand to the daemons.
package natstest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
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
	return startServer(tb, opts).ClientURL()
}

// startServer starts a nats-server with opts, waits until it accepts
// connections, and stops it when the test ends.
func startServer(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		tb.Fatalf("nats server %s not ready after 10s", opts.ServerName)
	}
	tb.Cleanup(ns.Shutdown)
	return ns
}

// MustOpenTLSServer starts a nats-server with JetStream that speaks only TLS,
// with a certificate for 127.0.0.1 from a CA made for the test, and requires
// user and password. It returns the client URL and the CA's PEM file.
func MustOpenTLSServer(tb testing.TB, user, password string) (url, caFile string) {
	tb.Helper()
	cert := nettest.NewCert(tb)
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: tb.TempDir(),
		NoSigs: true, NoLog: true, Username: user, Password: password, TLS: true,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}}
	ns := startServer(tb, opts)
	return "tls://" + strings.TrimPrefix(strings.TrimPrefix(ns.ClientURL(), "nats://"), "tls://"), cert.CAFile
}

// Cluster is n nats-servers with JetStream, routed to each other on
// loopback, each storing in its own temporary directory.
type Cluster struct {
	Servers []*server.Server
}

// URLs is the client URL list of every server, comma-separated.
func (c *Cluster) URLs() string {
	var urls []string
	for _, s := range c.Servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// Server returns the server named name (n1, n2, ...), or nil.
func (c *Cluster) Server(name string) *server.Server {
	for _, s := range c.Servers {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// MustOpenCluster starts n clustered servers and waits until JetStream can
// place a stream on all of them.
func MustOpenCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	ports, routes := make([]int, n), make([]string, n)
	for i := range n {
		ports[i] = nettest.FreePort(tb)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
	}
	c := &Cluster{}
	for i := range n {
		opts := &server.Options{ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: tb.TempDir(), NoSigs: true, NoLog: true, MaxPayload: nats.MaxPayload,
			Cluster: server.ClusterOpts{Name: "ottu-recon-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ","))}
		s, err := server.NewServer(opts)
		if err != nil {
			tb.Fatal(err)
		}
		s.Start()
		c.Servers = append(c.Servers, s)
		tb.Cleanup(s.Shutdown)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(10 * time.Second) {
			tb.Fatal("cluster server not ready")
		}
	}
	nc, err := natsgo.Connect(c.URLs())
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CLUSTER_READY", Subjects: []string{"cluster.ready"}, Replicas: n})
		cancel()
		if err == nil {
			_ = js.DeleteStream(context.Background(), "CLUSTER_READY")
			return c
		}
		if time.Now().After(deadline) {
			tb.Fatalf("JetStream cluster not ready after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
