// Command yardstick holds what make bench (scripts/bench.sh) measures
// ottu-recon against, and the small tools the script needs; see
// docs/performance.md.
//
//	yardstick ingest -listen ADDR   a bare server that only parses, verifies and decodes
//	                                each webhook, and answers 200
//	yardstick sink                  copies the rows ottu-recon stored into empty copies of
//	                                its tables with plain clickhouse-go batch inserts
//	                                (10,000 rows a batch), and prints webhooks/s
//	yardstick drain -want N         waits until webhooks_raw holds the stream's first N; prints
//	                                webhooks/s since the first arrived
//	yardstick wait URL              waits until URL answers 200
//	yardstick stored METRICS_URL    prints how many webhooks ingest stored in the stream
//	yardstick port                  prints a free loopback port
//	yardstick schema-at N           creates the database at schema version N, as an
//	                                earlier release left it (to time the upgrade)
//
// The HMAC key comes from OTTU_HMAC_KEYS, ClickHouse from CLICKHOUSE_ADDR and
// CLICKHOUSE_DATABASE, as for the daemons.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	chstore "github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/events"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "yardstick:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: yardstick ingest|sink|drain|wait|port")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "ingest":
		listen := fs.String("listen", "127.0.0.1:8090", "listen address")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return ingest(ctx, *listen)
	case "sink":
		batch := fs.Int("batch", 10000, "rows a batch")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return sink(ctx, *batch)
	case "drain":
		want := fs.Int("want", 0, "deliveries webhooks_raw must hold")
		timeout := fs.Duration("timeout", 10*time.Minute, "give up after")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return drain(ctx, *want, *timeout)
	case "wait":
		if len(args) != 2 {
			return errors.New("usage: yardstick wait URL")
		}
		return wait(ctx, args[1])
	case "stored":
		if len(args) != 2 {
			return errors.New("usage: yardstick stored METRICS_URL")
		}
		return stored(args[1])
	case "schema-at":
		if len(args) != 2 {
			return errors.New("usage: yardstick schema-at VERSION")
		}
		v, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		_, err = database(databaseName()).MigrateTo(ctx, v)
		return err
	case "port":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q", args[0])
}

// ingest serves the least any webhook receiver must do: read the body,
// parse, verify, decode.
func ingest(ctx context.Context, listen string) error {
	var keys string
	env := envconfig.OS()
	env.Secret(&keys, "OTTU_HMAC_KEYS")
	if err := env.Err(); err != nil {
		return err
	}
	var list [][]byte
	for _, k := range envconfig.List(keys) {
		list = append(list, []byte(k))
	}
	if len(list) == 0 {
		return errors.New("set OTTU_HMAC_KEYS")
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet { // up
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err == nil { // the production reader: shape, parse, verify, decode
			_, err = events.Read(body, events.Verification{Keys: list, Header: r.Header.Get("Signature")})
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"stored"}` + "\n"))
	})
	srv := &http.Server{Addr: listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// open connects to ClickHouse as the daemons do (CLICKHOUSE_ADDR,
// CLICKHOUSE_USERNAME, CLICKHOUSE_PASSWORD), in database.
// database is the DB of CLICKHOUSE_ADDR, not opened.
func database(name string) *chstore.DB {
	db := &chstore.DB{Database: name}
	addr := "127.0.0.1:9000"
	env := envconfig.OS()
	env.String(&addr, "CLICKHOUSE_ADDR")
	env.String(&db.Username, "CLICKHOUSE_USERNAME")
	env.Secret(&db.Password, "CLICKHOUSE_PASSWORD")
	db.Addrs = envconfig.List(addr)
	return db
}

// databaseName is CLICKHOUSE_DATABASE, the database the script made.
func databaseName() string {
	var name string
	envconfig.OS().String(&name, "CLICKHOUSE_DATABASE")
	return name
}

func open(ctx context.Context, name string) (*chstore.DB, error) {
	db := database(name)
	return db, db.Open(ctx)
}

// sink reads every row ottu-recon stored for the webhooks, then times plain
// batch inserts of the same rows into empty copies of the same tables.
func sink(ctx context.Context, batchRows int) error {
	db, err := open(ctx, databaseName())
	if err != nil {
		return err
	}
	defer db.Close()
	conn := db.Conn()
	type table struct {
		name    string
		columns []string
		rows    [][]any
	}
	var tables []*table
	for _, name := range []string{"webhooks_raw", "payment_events", "operation_events", "unreadable_webhooks", "rejected_webhooks"} {
		t := &table{name: name}
		if err := conn.Exec(ctx, "DROP TABLE IF EXISTS yardstick_"+name); err != nil {
			return err
		}
		if err := conn.Exec(ctx, "CREATE TABLE yardstick_"+name+" AS "+name); err != nil {
			return err
		}
		rows, err := conn.Query(ctx, "SELECT * FROM "+name)
		if err != nil {
			return err
		}
		t.columns = rows.Columns()
		types := rows.ColumnTypes()
		for rows.Next() {
			dst := make([]any, len(types))
			for i, ct := range types {
				dst[i] = reflect.New(ct.ScanType()).Interface()
			}
			if err := rows.Scan(dst...); err != nil {
				rows.Close()
				return err
			}
			for i := range dst {
				dst[i] = reflect.ValueOf(dst[i]).Elem().Interface()
			}
			t.rows = append(t.rows, dst)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		tables = append(tables, t)
	}
	webhooks := len(tables[0].rows)
	start := time.Now()
	for _, t := range tables {
		for lo := 0; lo < len(t.rows); lo += batchRows {
			b, err := conn.PrepareBatch(ctx, "INSERT INTO yardstick_"+t.name+" ("+strings.Join(t.columns, ", ")+")")
			if err != nil {
				return err
			}
			for _, row := range t.rows[lo:min(lo+batchRows, len(t.rows))] {
				if err := b.Append(row...); err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
			}
			if err := b.Send(); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	took := time.Since(start)
	for _, t := range tables {
		_ = conn.Exec(ctx, "DROP TABLE IF EXISTS yardstick_"+t.name)
	}
	fmt.Printf("%d webhooks in %.2f s: %.0f webhooks/s\n", webhooks, took.Seconds(), float64(webhooks)/took.Seconds())
	return nil
}

// drain waits until webhooks_raw holds the stream's first want messages
// (their sequences run from 1; the consumer stores batches in order), and
// prints the rate since the first arrived.
func drain(ctx context.Context, want int, timeout time.Duration) error {
	sys, err := open(ctx, "system") // reconcile serve creates the database
	if err != nil {
		return err
	}
	defer sys.Close()
	conn := sys.Conn()
	db := databaseName()
	deadline := time.Now().Add(timeout)
	var first time.Time
	for {
		var n, last uint64
		err := conn.QueryRow(ctx, "SELECT count(), max(stream_seq) FROM "+db+".webhooks_raw").Scan(&n, &last)
		if err != nil && !strings.Contains(err.Error(), "doesn't exist") && !strings.Contains(err.Error(), "UNKNOWN_") {
			return err
		}
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		if last >= uint64(want) {
			took := time.Since(first)
			fmt.Printf("%d webhooks in %.2f s: %.0f webhooks/s\n", want, took.Seconds(), float64(want)/took.Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhooks_raw holds stream messages up to %d after %s, want %d", last, timeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func wait(ctx context.Context, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within 60 s (%v)", url, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stored sums ottu_ingest_webhooks_total{outcome="stored"} from ingest's
// metrics.
func stored(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	total := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "ottu_ingest_webhooks_total{") && strings.Contains(line, `outcome="stored"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				return fmt.Errorf("metric line %q: %w", line, err)
			}
			total += v
		}
	}
	fmt.Printf("%.0f\n", total)
	return nil
}
