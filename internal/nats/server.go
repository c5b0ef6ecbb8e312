package nats

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// Server is an in-process nats-server with JetStream and file storage.
type Server struct {
	Listen   string // host:port; port 0 picks a free one
	StoreDir string
	// SyncAlways makes the server fsync every message before acknowledging
	// it (NATS_SYNC_ALWAYS). By default JetStream acknowledges once the
	// message is written to the OS and fsyncs every 2 minutes: a host crash
	// (not a process crash) can lose what was acknowledged since.
	SyncAlways bool
	// User and Password, or Token, protect the listener (the same the
	// daemons connect with); empty: no authentication.
	User, Password, Token string
	Logger                zerolog.Logger

	ns *server.Server
}

// MaxPayload of the embedded server: room for a 1 MiB body plus headers.
const MaxPayload = 2 << 20

// Open starts the server and returns once it accepts connections.
func (s *Server) Open() error {
	host, portText, err := net.SplitHostPort(s.Listen)
	if err != nil {
		return fmt.Errorf("parse nats listen address %q: %w", s.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("parse nats listen port %q: %w", portText, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName:    "ottu-recon-embedded",
		Host:          host,
		Port:          port,
		JetStream:     true,
		StoreDir:      s.StoreDir,
		MaxPayload:    MaxPayload,
		NoSigs:        true,
		SyncAlways:    s.SyncAlways,
		Username:      s.User,
		Password:      s.Password,
		Authorization: s.Token,
	})
	if err != nil {
		return fmt.Errorf("create nats server: %w", err)
	}
	ns.SetLoggerV2(serverLogger{s.Logger}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("nats server on %s not ready after 10s", s.Listen)
	}
	s.ns = ns
	return nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Close shuts the server down and waits for it.
func (s *Server) Close() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// serverLogger adapts zerolog to nats-server's Logger.
type serverLogger struct{ l zerolog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.l.Info().Msgf(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.l.Warn().Msgf(format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.l.Error().Msgf(format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.l.Error().Msgf(format, v...) }
func (l serverLogger) Debugf(format string, v ...any)  { l.l.Debug().Msgf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  { l.l.Trace().Msgf(format, v...) }
