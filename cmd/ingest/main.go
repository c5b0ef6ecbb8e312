// Command ingest receives Ottu webhooks, verifies them and stores every one
// durably before answering 200 (package internal/ingest). It reads its
// configuration from the environment; see the README.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/httpserver"
	"github.com/ottu-recon/ottu-recon/internal/ingest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "--help", "help":
			fmt.Fprintln(stdout, "ingest: receive Ottu webhooks. Configured by environment variables; see README.md.\n"+
				"ingest healthcheck [URL]: exit 0 when URL (default http://127.0.0.1:8080/readyz) answers 200.")
			return nil
		case "healthcheck":
			url := "http://127.0.0.1:8080/readyz"
			if len(args) > 1 {
				url = args[1]
			}
			return httpserver.Probe(ctx, url)
		}
		return fmt.Errorf("unknown argument %q: ingest takes its configuration from the environment", args[0])
	}
	env := envconfig.OS()
	cfg, err := ingest.LoadConfig(env)
	if err != nil {
		return err
	}
	logger := zerolog.New(os.Stderr).Level(cfg.LogLevel).With().Timestamp().Str("daemon", "ingest").Logger()
	for _, v := range env.Unknown(os.Environ(), ingest.VarPrefixes...) {
		logger.Warn().Str("variable", v).Msg("unknown variable ignored; a typo?")
	}
	m := ingest.NewMain(cfg, logger)
	if err := m.Open(); err != nil {
		return err
	}
	logger.Info().Str("config", cfg.String()).Str("url", m.URL()).Msg("ingest ready")
	<-ctx.Done()
	logger.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return m.Close(sctx)
}
