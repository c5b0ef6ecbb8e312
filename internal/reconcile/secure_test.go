package reconcile

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse"
	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ingest"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/nats/natstest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// lockedBuffer collects the daemons' logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecure_Compose runs both daemons, configured through their
// environment as in production, against a NATS server started from the very
// deploy/nats.conf that docker-compose.yml runs (a user per daemon, with
// permissions) and a ClickHouse user with a password, with a secret in every
// input: the webhooks flow end to end, each daemon is refused what it has no
// business doing, and no secret shows in any log, metric or table.
func TestSecure_Compose(t *testing.T) {
	const (
		hmacKey     = "hmac-S3CRET-1"
		ingestPW    = "ingest-S3CRET-2"
		reconcilePW = "reconcile-S3CRET-3"
		alertToken  = "xoxb-S3CRET-4"
		alertQuery  = "S3CRET-5"
		alertKey    = "alert-S3CRET-6"
		ottuKey     = "ottu-api-S3CRET-7"
		consolePW   = "console-S3CRET-8"
	)
	secrets := []string{hmacKey, ingestPW, reconcilePW, alertToken, alertQuery, alertKey, chtest.SecretPassword, ottuKey, consolePW}
	// Every secret that can come from a file does, in one daemon or the other.
	file := func(secret string) string {
		p := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Ottu's API: asked about the parent below; it must see the key, no log may.
	var ottuAsked atomic.Int32
	ottuAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Api-Key "+ottuKey {
			ottuAsked.Add(1)
		}
		w.WriteHeader(http.StatusBadGateway) // no verdict: recorded with its reason
		_, _ = io.WriteString(w, "<html>bad gateway</html>")
	}))
	defer ottuAPI.Close()
	t.Setenv("NATS_INGEST_PASSWORD", ingestPW)
	t.Setenv("NATS_RECONCILE_PASSWORD", reconcilePW)
	natsURL := natstest.MustOpenServerFromConfig(t, "../../deploy/nats.conf")
	host := strings.TrimPrefix(natsURL, "nats://")
	ch := chtest.StartServer(t, "UTC")
	if nc, err := natsgo.Connect(natsURL); err == nil {
		nc.Close()
		t.Fatal("an anonymous client was accepted")
	}
	var logs lockedBuffer
	logger := zerolog.New(&logs)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer failing.Close()

	// ingest: the credentials in the URLs, with and without a scheme (as
	// nats.go accepts them), the HMAC key from a file.
	icfg, err := ingest.LoadConfig(fromMap(map[string]string{
		"OTTU_HMAC_KEYS_FILE": file(hmacKey), "NATS_URL": "ingest:" + ingestPW + "@" + host + ",nats://ingest:" + ingestPW + "@" + host,
		"INGEST_LISTEN": "127.0.0.1:0", "INGEST_SPOOL_DIR": t.TempDir(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	ilog := logger.With().Str("daemon", "ingest").Logger()
	ilog.Info().Str("config", icfg.String()).Msg("ingest ready") // as cmd/ingest logs it
	im := ingest.NewMain(icfg, ilog)
	if err := im.Open(); err != nil {
		t.Fatal(err)
	}
	defer im.Close(context.Background())

	// reconcile: user and password, a ClickHouse password, an alert URL
	// with tokens, Ottu's API key, each secret from a file.
	db := "ottu_secure_test"
	rcfg, err := LoadConfig(fromMap(map[string]string{
		"NATS_URL": natsURL, "NATS_USER": "reconcile", "NATS_PASSWORD_FILE": file(reconcilePW),
		"CLICKHOUSE_ADDR": ch.Addr, "CLICKHOUSE_USERNAME": chtest.SecretUser, "CLICKHOUSE_PASSWORD_FILE": file(chtest.SecretPassword),
		"CLICKHOUSE_DATABASE": db, "ALERT_HMAC_KEY_FILE": file(alertKey),
		"OTTU_API_URL": ottuAPI.URL, "OTTU_API_KEY_FILE": file(ottuKey), "OTTU_HMAC_KEYS": "another-key",
		"ALERT_WEBHOOK_URL": failing.URL + "/services/T000/B000/" + alertToken + "?token=" + alertQuery,
		"RECON_LISTEN":      "127.0.0.1:0", "RECON_SCHEDULE": "@every 1h", "RECON_BATCH_WAIT": "50ms",
		"RECON_CONSOLE_LISTEN": "127.0.0.1:0", "RECON_CONSOLE_USERS_FILE": consoleUsers(t, "ada", "operator", consolePW),
	}))
	if err != nil {
		t.Fatal(err)
	}
	rm := NewMain(rcfg, logger.With().Str("daemon", "reconcile").Logger())
	rm.RetryMin = 50 * time.Millisecond
	if err := rm.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rm.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Traffic through ingest: a sandbox payment (a finding), a gateway-side
	// refund, one body with a bad signature.
	post := func(body []byte) int {
		resp, err := http.Post(im.URL()+"/webhooks/ottu", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	key := []byte(hmacKey)
	anHourAgo := time.Now().Add(-time.Hour).UTC().Format("2006-01-02 15:04:05") // old enough to ask Ottu about
	for _, m := range []map[string]any{payment("sec-1", map[string]any{"is_sandbox": true, "timestamp_utc": anHourAgo}), pgRefund("sec-1")} {
		if code := post(ottusim.Sign(m, events.SchemeA, key)); code != http.StatusOK {
			t.Fatalf("signed webhook: %d", code)
		}
	}
	if code := post(ottusim.Sign(payment("sec-2", nil), events.SchemeA, []byte("wrong"))); code != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", code)
	}
	waitReady(t, rm)
	// The scheduled passes need the lease: the reconcile user may take it.
	waitFor(t, "the pass lease", 15*time.Second, func() bool {
		held, _ := rm.lease.Held()
		return held
	})
	store := &clickhouse.DB{Addrs: []string{ch.Addr}, Database: db, Username: chtest.SecretUser, Password: chtest.SecretPassword}
	if err := store.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	waitFor(t, "stored through both daemons", 30*time.Second, func() bool {
		return chtest.Count(t, store, "SELECT count() FROM webhooks_raw") == 2 && chtest.Count(t, store, "SELECT count() FROM rejected_webhooks") == 1
	})
	rep, err := rm.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Raised != 2 || strings.Contains(rep.AlertError, "publish") || !strings.Contains(rep.AlertError, "502") {
		t.Fatalf("pass: %+v (want 2 raised, announced on recon.findings, the alert refused with 502)", rep)
	}
	if ottuAsked.Load() == 0 || rep.InquiryErrors == 0 {
		t.Fatalf("Ottu's API was not asked with the key (%d, %+v): the check below would prove nothing of it", ottuAsked.Load(), rep)
	}

	// Each daemon is refused what it has no business doing.
	as := func(user, pw string) jetstream.JetStream {
		nc, err := natsgo.Connect(natsURL, natsgo.UserInfo(user, pw))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return js
	}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := as("ingest", ingestPW).CreateOrUpdateConsumer(short, "OTTU_WEBHOOKS", jetstream.ConsumerConfig{Durable: "thief"}); err == nil {
		t.Error("ingest's user may read the stream")
	}
	if _, err := as("reconcile", reconcilePW).Publish(short, "ottu.webhooks.payment", []byte(`{}`)); err == nil {
		t.Error("reconcile's user may publish webhooks")
	}
	// Ottu's rate is shared through NATS under these permissions too.
	kvCtx, cancelKV := context.WithTimeout(ctx, 5*time.Second)
	defer cancelKV()
	if kv, err := as("reconcile", reconcilePW).KeyValue(kvCtx, nats.LimitsBucket); err != nil {
		t.Errorf("the shared rate's bucket: %v", err)
	} else if _, err := kv.Get(kvCtx, psqRateKey); err != nil {
		t.Errorf("the shared rate of Ottu's API was not kept in NATS: %v", err)
	}

	// The console's sessions live in NATS under these permissions too.
	console := newClient(t, rm.ConsoleURL())
	if resp, csrf := console.signIn("ada", consolePW); resp.StatusCode != http.StatusSeeOther || csrf == "" {
		t.Fatalf("console sign-in under the reconcile user's permissions: %d", resp.StatusCode)
	}
	if resp, page := console.do("GET", "/?status=all", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(page, "sec-1") {
		t.Fatalf("console findings page: %d", resp.StatusCode)
	}

	// No secret anywhere.
	places := map[string]string{"logs": logs.String()}
	for name, u := range map[string]string{"ingest metrics": im.URL() + "/metrics", "reconcile metrics": rm.URL() + "/metrics",
		"reconcile readyz": rm.URL() + "/readyz"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		places[name] = string(b)
	}
	tables := httpQuery(t, ch.HTTPAddr, "SELECT name FROM system.tables WHERE database = '"+db+"' AND engine NOT LIKE '%View' FORMAT TSV")
	for _, table := range strings.Fields(tables) {
		places["table "+table] = httpQuery(t, ch.HTTPAddr, "SELECT * FROM "+db+"."+table+" FORMAT TSV")
	}
	if !strings.Contains(places["table recon_runs"], "502") {
		t.Fatal("recon_runs does not hold the alert error: the check below would prove nothing")
	}
	for where, text := range places {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the secret %q", where, s)
			}
		}
	}
}

// consoleUsers writes a console users file with one user.
func consoleUsers(t *testing.T, name, role, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "console-users")
	if err := os.WriteFile(p, []byte(name+" "+role+" "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func httpQuery(t *testing.T, addr, q string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(q))
	req.SetBasicAuth(chtest.SecretUser, chtest.SecretPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", q, resp.StatusCode, b)
	}
	return string(b)
}

// fromMap is an environment holding m alone.
func fromMap(m map[string]string) *envconfig.Env {
	return &envconfig.Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}
