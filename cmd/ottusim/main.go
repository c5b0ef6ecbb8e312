// Command ottusim is the Ottu traffic simulator and load generator.
//
//	ottusim send    post realistic signed webhooks to an ingest URL
//	ottusim alerts  receive ottu-recon alerts, verify their signature, print them
//
// The HMAC key comes from OTTU_HMAC_KEYS (its first key) or OTTU_HMAC_KEYS_FILE,
// the alert key from ALERT_HMAC_KEY: never from flags.
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/time/rate"

	"github.com/ottu-recon/ottu-recon/internal/alert"
	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

const usage = `usage: ottusim send|alerts|ottu-api [flags]   (ottusim send -h for the flags)

  send       post simulated Ottu webhooks to ingest (the load generator)
  alerts     receive and verify ottu-recon's alerts
  ottu-api   answer Ottu's Payment Status Query for the parents send wrote with -truth-out`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ottusim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("a subcommand is required")
	}
	switch args[0] {
	case "send":
		return send(ctx, args[1:], stdout, stderr)
	case "alerts":
		return alerts(ctx, args[1:], stdout)
	case "ottu-api":
		return ottuAPI(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q\n%s", args[0], usage)
}

// SendConfig is the send subcommand's configuration.
type SendConfig struct {
	URL         string
	Key         []byte
	Parents     int
	Anomalies   float64
	Duplicates  float64
	OutOfOrder  float64
	SchemeB     float64
	Lose        float64 // fraction of parents whose payment webhooks are never sent
	Rate        float64 // requests per second; 0 = as fast as Concurrency allows
	Concurrency int
	Seed        uint64
	Grace       time.Duration
	OrdersOut   string
	TruthOut    string
	SummaryOut  string
	Progress    bool
	Timeout     time.Duration
}

// Summary is what a send did; -summary-out writes it as JSON.
type Summary struct {
	Parents          int            `json:"parents"`
	Lost             []string       `json:"lost"` // parents whose payment webhooks were never sent
	Deliveries       int            `json:"deliveries"`
	Distinct         int            `json:"distinct_webhooks"`
	Statuses         map[string]int `json:"statuses"`
	Errors           int            `json:"errors"`
	Seconds          float64        `json:"seconds"`
	PerSecond        float64        `json:"per_second"`
	LatencyP50ms     float64        `json:"latency_p50_ms"`
	LatencyP99ms     float64        `json:"latency_p99_ms"`
	ExpectedFindings []Expected     `json:"expected_findings"`
}

// Expected is a finding the traffic must raise.
type Expected struct {
	SessionID string `json:"session_id"`
	Code      string `json:"code"`
}

func send(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := SendConfig{}
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080/webhooks/ottu", "ingest webhook URL")
	fs.IntVar(&c.Parents, "parents", 500, "parent payments to simulate (each sends 1 to 5 webhooks)")
	fs.Float64Var(&c.Anomalies, "anomalies", 0.2, "fraction of parents built to trip a finding code (spread over every code)")
	fs.Float64Var(&c.Duplicates, "duplicates", 0.05, "fraction of webhooks delivered twice, exactly")
	fs.Float64Var(&c.OutOfOrder, "out-of-order", 0.1, "fraction of parents whose webhooks arrive in reverse order")
	fs.Float64Var(&c.SchemeB, "scheme-b", 0.2, "fraction of webhooks signed with scheme B instead of A")
	fs.Float64Var(&c.Lose, "lose", 0, "fraction of parents (paid purchases) whose payment webhooks are never sent, as when ingest was down")
	fs.Float64Var(&c.Rate, "rate", 0, "requests per second (0: as fast as -concurrency allows)")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "requests in flight")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed: the same seed sends the same traffic")
	fs.DurationVar(&c.Grace, "grace", 10*time.Minute, "RECON_GRACE of the reconciler (dates the traffic)")
	fs.StringVar(&c.OrdersOut, "orders-out", "", "write the merchant orders as CSV (order_no,amount,currency_code,updated_at) to this file")
	fs.StringVar(&c.SummaryOut, "summary-out", "", "write the summary, with the expected findings, as JSON to this file")
	fs.StringVar(&c.TruthOut, "truth-out", "", "write Ottu's own record of every parent as JSON to this file (for ottusim ottu-api)")
	fs.BoolVar(&c.Progress, "progress", true, "show a progress bar on stderr")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "per-request timeout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	keys, err := envconfig.ReadSecret("OTTU_HMAC_KEYS")
	if err != nil {
		return err
	}
	list := envconfig.List(keys)
	if len(list) == 0 {
		return errors.New("set OTTU_HMAC_KEYS (or OTTU_HMAC_KEYS_FILE) to the key ingest verifies with")
	}
	c.Key = []byte(list[0])
	if c.Concurrency < 1 || c.Parents < 1 {
		return errors.New("-concurrency and -parents must be at least 1")
	}
	sum, err := Send(ctx, c, stderr)
	if err != nil {
		return err
	}
	printSummary(stdout, sum)
	if sum.Errors > 0 || sum.Statuses["200"] != sum.Deliveries {
		return fmt.Errorf("%d of %d deliveries were not answered 200", sum.Deliveries-sum.Statuses["200"], sum.Deliveries)
	}
	return nil
}

// Send generates the traffic and posts it.
func Send(ctx context.Context, c SendConfig, progress io.Writer) (Summary, error) {
	gen := &ottusim.Generator{Rand: rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15)), Now: time.Now().UTC(), Grace: c.Grace}
	parents := gen.Mix(c.Parents, c.Anomalies)
	lost := ottusim.Lose(parents, c.Lose)
	deliveries := gen.Deliveries(parents, c.Key, c.SchemeB, c.Duplicates, c.OutOfOrder)
	sum := Summary{Parents: len(parents), Lost: lost, Deliveries: len(deliveries), Statuses: map[string]int{}}
	distinct := map[string]bool{}
	for _, d := range deliveries {
		distinct[string(d.Body)] = true
	}
	sum.Distinct = len(distinct)
	var orders []ottusim.Order
	for _, p := range parents {
		for _, code := range p.Expect {
			if code == "ORDER_AMOUNT_MISMATCH" && c.OrdersOut == "" {
				continue // only raised when the orders are loaded
			}
			sum.ExpectedFindings = append(sum.ExpectedFindings, Expected{p.SessionID, string(code)})
		}
		if p.Order != nil {
			orders = append(orders, *p.Order)
		}
	}
	if c.OrdersOut != "" {
		if err := writeOrders(c.OrdersOut, orders); err != nil {
			return sum, err
		}
	}
	if c.TruthOut != "" {
		b, err := json.Marshal(parents)
		if err == nil {
			err = os.WriteFile(c.TruthOut, b, 0o600)
		}
		if err != nil {
			return sum, fmt.Errorf("write Ottu's records: %w", err)
		}
	}

	var limiter *rate.Limiter
	if c.Rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(c.Rate), max(1, c.Concurrency))
	}
	var bar *progressbar.ProgressBar
	if c.Progress {
		bar = progressbar.NewOptions(len(deliveries), progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("posting webhooks"), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("req"), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
	}
	client := &http.Client{Timeout: c.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: c.Concurrency}}
	jobs := make(chan ottusim.Delivery)
	var mu sync.Mutex
	var latencies []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range c.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range jobs {
				t0 := time.Now()
				status, err := post(ctx, client, c.URL, d.Body)
				took := time.Since(t0)
				mu.Lock()
				if err != nil {
					sum.Errors++
				} else {
					sum.Statuses[fmt.Sprint(status)]++
				}
				latencies = append(latencies, took)
				mu.Unlock()
				if bar != nil {
					_ = bar.Add(1)
				}
			}
		}()
	}
feed:
	for _, d := range deliveries {
		if limiter != nil {
			if err := limiter.Wait(ctx); err != nil {
				break
			}
		}
		select {
		case jobs <- d:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	sum.Seconds = time.Since(start).Seconds()
	sum.PerSecond = float64(len(latencies)) / sum.Seconds
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if n := len(latencies); n > 0 {
		sum.LatencyP50ms = float64(latencies[n/2].Microseconds()) / 1000
		sum.LatencyP99ms = float64(latencies[min(n-1, n*99/100)].Microseconds()) / 1000
	}
	if c.SummaryOut != "" {
		b, _ := json.MarshalIndent(sum, "", "  ")
		if err := os.WriteFile(c.SummaryOut, b, 0o644); err != nil {
			return sum, fmt.Errorf("write summary: %w", err)
		}
	}
	return sum, ctx.Err()
}

func post(ctx context.Context, client *http.Client, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func writeOrders(path string, orders []ottusim.Order) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write orders: %w", err)
	}
	w := csv.NewWriter(f)
	for _, o := range orders {
		_ = w.Write([]string{o.OrderNo, o.Amount, o.Currency, o.UpdatedAt.UTC().Format(time.DateTime)})
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		return fmt.Errorf("write orders: %w", err)
	}
	return nil
}

func printSummary(w io.Writer, s Summary) {
	codes := make([]string, 0, len(s.Statuses))
	for k := range s.Statuses {
		codes = append(codes, k)
	}
	sort.Strings(codes)
	fmt.Fprintf(w, "sent %d deliveries (%d distinct webhooks, %d parents) in %.1fs: %.0f req/s, p50 %.1f ms, p99 %.1f ms\n",
		s.Deliveries, s.Distinct, s.Parents, s.Seconds, s.PerSecond, s.LatencyP50ms, s.LatencyP99ms)
	for _, k := range codes {
		fmt.Fprintf(w, "  HTTP %s: %d\n", k, s.Statuses[k])
	}
	if s.Errors > 0 {
		fmt.Fprintf(w, "  transport errors: %d\n", s.Errors)
	}
	fmt.Fprintf(w, "expected findings: %d\n", len(s.ExpectedFindings))
}

// alerts serves an alert receiver until ctx ends: it verifies each alert's
// X-Recon-Signature with ALERT_HMAC_KEY (when set) and prints it.
func alerts(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8099", "address to receive alerts on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := envconfig.ReadSecret("ALERT_HMAC_KEY")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		sig := "unsigned"
		if key != "" {
			sig = "signature INVALID"
			if r.Header.Get(alert.SignatureHeader) == alert.Sign([]byte(key), body) {
				sig = "signature ok"
			}
		}
		var p alert.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, "not an alert", http.StatusBadRequest)
			return
		}
		mu.Lock()
		fmt.Fprintf(stdout, "alert %s: %d new finding(s), %s\n", p.RunID, len(p.Findings), sig)
		for i, f := range p.Findings {
			if i == 10 {
				fmt.Fprintf(stdout, "  ... and %d more\n", len(p.Findings)-10)
				break
			}
			fmt.Fprintf(stdout, "  %-8s %-26s %s  %s\n", f.Severity, f.Code, f.SessionID, f.Detail)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// ottuAPI serves a simulated Ottu host's Payment Status Query, with Ottu's
// throttle, for the parents in the -truth file, until ctx ends. The API key
// is OTTU_API_KEY; answers are signed with the first of OTTU_HMAC_KEYS.
func ottuAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ottu-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8098", "address to serve the Ottu API on")
	truth := fs.String("truth", "", "the file ottusim send -truth-out wrote")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var key, keys string
	env := envconfig.OS()
	env.Secret(&key, "OTTU_API_KEY")
	env.Secret(&keys, "OTTU_HMAC_KEYS")
	if err := env.Err(); err != nil {
		return err
	}
	if key == "" || len(envconfig.List(keys)) == 0 || *truth == "" {
		return errors.New("set OTTU_API_KEY, OTTU_HMAC_KEYS and -truth")
	}
	b, err := os.ReadFile(*truth)
	if err != nil {
		return err
	}
	var parents []ottusim.Parent
	if err := json.Unmarshal(b, &parents); err != nil {
		return fmt.Errorf("read %s: %w", *truth, err)
	}
	api := &ottusim.API{Key: key, HMACKey: []byte(envconfig.List(keys)[0])}
	api.Add(parents...)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "simulated Ottu API on http://%s (%d payments)\n", ln.Addr(), len(parents))
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	st := api.Stats()
	fmt.Fprintf(stdout, "Ottu API: %d questions, %d answered, %d not found, %d throttled, %d rate limited\n",
		st.Calls, st.Answered, st.NotFound, st.Throttled, st.RateLimited)
	return nil
}
