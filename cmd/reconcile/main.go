// Command reconcile stores every webhook from JetStream in ClickHouse and
// reconciles parent payments against their operations on a schedule
// (package internal/reconcile).
//
//	reconcile serve      the daemon: consume into ClickHouse, run scheduled passes
//	reconcile migrate    create the database if missing, create or upgrade the schema
//	reconcile run-once   one reconciliation pass now (alerts included), then exit
//	reconcile report     print reports to stdout
//	reconcile console-user NAME ROLE
//	                     add a console user (or change one), password on stdin
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/console"
	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/httpserver"
	"github.com/ottu-recon/ottu-recon/internal/reconcile"
)

const usage = `usage: reconcile serve|migrate|run-once|report [flags]

  serve      consume webhooks from JetStream into ClickHouse and run the scheduled pass;
             with RECON_CONSOLE_LISTEN, serve the findings console too
  migrate    create the database if missing, then create or upgrade the schema (idempotent)
  run-once   run one reconciliation pass now, alerts included, then exit
  report     print reports (reconcile report -h for its flags)
  console-user NAME ROLE
             add a user to RECON_CONSOLE_USERS_FILE (role viewer or operator), or give an
             existing one this role and password; the password is the first line of stdin
  healthcheck [URL]  exit 0 when URL (default http://127.0.0.1:8081/readyz) answers 200

Configuration comes from environment variables; see README.md.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "reconcile:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, usage)
		if len(args) == 0 {
			return errors.New("a subcommand is required")
		}
		return nil
	}
	if args[0] == "healthcheck" {
		url := "http://127.0.0.1:8081/readyz"
		if len(args) > 1 {
			url = args[1]
		}
		return httpserver.Probe(ctx, url)
	}
	env := envconfig.OS()
	cfg, err := reconcile.LoadConfig(env)
	if err != nil {
		return err
	}
	logger := zerolog.New(os.Stderr).Level(cfg.LogLevel).With().Timestamp().Str("daemon", "reconcile").Logger()
	for _, v := range env.Unknown(os.Environ(), reconcile.VarPrefixes...) {
		logger.Warn().Str("variable", v).Msg("unknown variable ignored; a typo?")
	}
	if args[0] == "console-user" {
		return consoleUser(cfg, args[1:], os.Stdin, logger)
	}
	m := reconcile.NewMain(cfg, logger)
	switch args[0] {
	case "migrate":
		res, err := m.Migrate(ctx)
		if err != nil {
			return err
		}
		logger.Info().Bool("created_database", res.CreatedDatabase).Strs("applied", res.Applied).
			Str("database", cfg.ClickHouseDatabase).Msg("schema up to date")
		return nil
	case "serve":
		if err := m.Open(ctx); err != nil {
			return err
		}
		logger.Info().Str("listen", m.URL()).Str("schedule", cfg.Schedule).Msg("reconcile serving")
		<-ctx.Done()
		logger.Info().Msg("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		return m.Close(sctx)
	case "run-once":
		return m.RunOnce(ctx)
	case "report":
		return m.Report(ctx, args[1:], stdout)
	}
	fmt.Fprintln(os.Stderr, usage)
	return fmt.Errorf("unknown subcommand %q", args[0])
}

// consoleUser is `reconcile console-user NAME ROLE`.
func consoleUser(cfg reconcile.Config, args []string, stdin io.Reader, logger zerolog.Logger) error {
	if len(args) != 2 {
		return errors.New("usage: reconcile console-user NAME ROLE (viewer or operator), the password on stdin")
	}
	if cfg.Console.UsersFile == "" {
		return errors.New("console-user: set RECON_CONSOLE_USERS_FILE to the users file to write")
	}
	role, err := console.ParseRole(args[1])
	if err != nil {
		return err
	}
	password, err := console.ReadPassword(stdin)
	if err != nil {
		return err
	}
	if err := console.AddUser(cfg.Console.UsersFile, args[0], role, password); err != nil {
		return err
	}
	logger.Info().Str("user", args[0]).Str("role", string(role)).Str("file", cfg.Console.UsersFile).Msg("console user set")
	return nil
}
