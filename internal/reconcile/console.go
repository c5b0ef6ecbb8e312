package reconcile

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/console"
	"github.com/ottu-recon/ottu-recon/internal/httpserver"
	"github.com/ottu-recon/ottu-recon/internal/nats"
)

// openConsole serves the findings console on RECON_CONSOLE_LISTEN, when set
// (docs/console.md). Its sessions live in NATS, so that any replica serves
// a person signed in on another, and signing out ends the session on all.
func (m *Main) openConsole() error {
	if m.Config.Console.Listen == "" {
		return nil
	}
	users, err := console.LoadUsers(m.Config.Console.UsersFile)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	log := m.component("console")
	if users.Len() == 0 {
		log.Warn().Msg("the console users file lists nobody: nobody can sign in (reconcile console-user NAME ROLE adds one)")
	}
	proxies, err := m.Config.Console.Proxies() // LoadConfig checked them
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	const ttl = 12 * time.Hour
	c := &console.Console{
		TrustedProxies: proxies,
		Store:          m.db,
		Feed:           m.changes(),
		UsersFile:      m.Config.Console.UsersFile,
		Sessions:       &console.KVSessions{KV: nats.SessionsBucket(m.conn, ttl, m.Config.Stream.Replicas)},
		// Secure cookies (and the __Host- prefix) whenever the console is
		// reached over TLS: served by reconcile, or behind a proxy.
		Secure:     m.Config.Console.TLSCertFile != "" || strings.HasPrefix(m.Config.Console.URL, "https://"),
		PublicURL:  m.Config.Console.URL,
		SessionTTL: ttl,
		// The findings page shows the coverage of the sweep's watch.
		CoverageWindow: m.Config.OrderWatch,
		Coverage:       (&clickhouse.Store{DB: m.db}).Coverage,
		Log:            log,
		Now:            m.Now,
	}
	handler := c.Handler()
	m.console = &httpserver.Server{Addr: m.Config.Console.Listen, NoAdmin: true, MaxConnections: 256,
		CertFile: m.Config.Console.TLSCertFile, KeyFile: m.Config.Console.TLSKeyFile,
		Routes: map[string]http.Handler{"/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !m.ready.Load() {
				w.Header().Set("Retry-After", "5")
				http.Error(w, "The console is starting: ClickHouse or NATS is not reachable yet.", http.StatusServiceUnavailable)
				return
			}
			handler.ServeHTTP(w, r)
		})}}
	if err := m.console.Open(); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.consoleStop = cancel
	readyCh := m.readyCh
	go func() {
		select {
		case <-readyCh: // ClickHouse is open
			c.Refresh(ctx, 2*time.Second)
		case <-ctx.Done():
		}
	}()
	log.Info().Str("url", m.console.URL()).Int("users", users.Len()).Msg("findings console listening")
	return nil
}

// ConsoleURL is the console's base URL ("" when it is off).
// deadcode:keep: tests start the console on :0 and read back where it listens.
func (m *Main) ConsoleURL() string {
	if m.console == nil {
		return ""
	}
	return m.console.URL()
}

// changes is the subject every replica's console listens on for what
// changed in the findings (console.Change).
func (m *Main) changes() nats.Feed { return nats.Feed{Conn: m.conn, Subject: nats.ChangesSubject} }
