package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/clickhouse/chtest"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
	"github.com/ottu-recon/ottu-recon/internal/ottusim"
)

// amBinary is Debian's Alertmanager (scripts/prometheus.sh installs it).
const amBinary = "/usr/bin/prometheus-alertmanager"

// amReceiver is the webhook receiver Alertmanager notifies: it keeps every
// notification, by alert (session_id and alertname) and status.
type amReceiver struct {
	mu   sync.Mutex
	got  map[string]int // "session/code/status" -> notifications
	seen map[string]map[string]string
}

func (r *amReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var msg struct {
		Alerts []struct {
			Status string            `json:"status"`
			Labels map[string]string `json:"labels"`
		} `json:"alerts"`
	}
	if err := json.NewDecoder(req.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range msg.Alerts {
		r.got[a.Labels["session_id"]+"/"+a.Labels["alertname"]+"/"+a.Status]++
		r.seen[a.Labels["session_id"]+"/"+a.Labels["alertname"]] = a.Labels
	}
}

func (r *amReceiver) count(session string, code ledger.Code, status string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[session+"/"+string(code)+"/"+status]
}

func (r *amReceiver) labels(session string, code ledger.Code) map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[session+"/"+string(code)]
}

// alertmanager is one Debian Alertmanager process, routing every alert to
// the receiver at once; peers, when given, make it one of a cluster.
type alertmanager struct {
	url, cluster string
	cmd          *exec.Cmd
	args         []string
}

func mustAlertmanager(t *testing.T, receiver string) *alertmanager {
	t.Helper()
	return startAlertmanager(t, receiver, "")
}

// mustAlertmanagerPair starts two Alertmanagers peered as a cluster.
func mustAlertmanagerPair(t *testing.T, receiver string) (*alertmanager, *alertmanager) {
	t.Helper()
	a, b := nettest.FreeAddr(t), nettest.FreeAddr(t)
	return startAlertmanager(t, receiver, a, b), startAlertmanager(t, receiver, b, a)
}

// startAlertmanager starts one; with cluster set, it listens for its peers
// there and joins peers.
func startAlertmanager(t *testing.T, receiver, cluster string, peers ...string) *alertmanager {
	t.Helper()
	if _, err := os.Stat(amBinary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: scripts/prometheus.sh installs it", amBinary)
		}
		t.Skipf("%s missing: run under scripts/prometheus.sh", amBinary)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(config, []byte(`route:
  receiver: test
  group_by: [session_id, alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: `+receiver+`
        send_resolved: true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	am := &alertmanager{url: "http://" + nettest.FreeAddr(t), cluster: cluster}
	am.args = []string{"--config.file=" + config, "--storage.path=" + dir, "--web.listen-address=" + strings.TrimPrefix(am.url, "http://")}
	if cluster == "" {
		am.args = append(am.args, "--cluster.listen-address=")
	} else {
		am.args = append(am.args, "--cluster.listen-address="+am.cluster, "--cluster.settle-timeout=1s", "--cluster.pushpull-interval=1s",
			"--cluster.gossip-interval=50ms", "--cluster.peer-timeout=1s")
		for _, p := range peers {
			am.args = append(am.args, "--cluster.peer="+p)
		}
	}
	am.start(t)
	t.Cleanup(am.stop)
	return am
}

func (am *alertmanager) start(t *testing.T) {
	t.Helper()
	am.cmd = exec.Command(amBinary, am.args...)
	if os.Getenv("TEST_LOG") != "" {
		am.cmd.Stderr = os.Stderr
	}
	if err := am.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Alertmanager ready", 30*time.Second, func() bool {
		resp, err := http.Get(am.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// stop ends Alertmanager as an operator would (SIGTERM): it keeps its
// notification log, so it knows after a start what it notified before.
func (am *alertmanager) stop() {
	if am.cmd == nil || am.cmd.Process == nil {
		return
	}
	_ = am.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = am.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = am.cmd.Process.Kill()
		<-done
	}
	am.cmd = nil
}

// TestAlertmanager_FireAndResolve: against Debian's Alertmanager, findings
// fire with their labels and the receiver is notified; when a finding
// resolves (its parent's webhook arrives) and when a person acknowledges
// another, the receiver gets the resolved notification; an Alertmanager
// that is down loses nothing, and a resolved notification still owed
// survives a restart of reconcile.
func TestAlertmanager_FireAndResolve(t *testing.T) {
	rcv := &amReceiver{got: map[string]int{}, seen: map[string]map[string]string{}}
	sink := httptest.NewServer(rcv)
	defer sink.Close()
	am := mustAlertmanager(t, sink.URL)
	key := []byte("am-key")
	_, db, m, pub := mustRig(t, func(cfg *Config) {
		cfg.AlertmanagerURLs, cfg.Console.URL, cfg.HMACKeys = []string{am.url}, "https://recon.example.com", [][]byte{key}
	})
	gen := &ottusim.Generator{Now: time.Now().UTC(), Grace: 10 * time.Minute}
	orphan, over := gen.Parent(ottusim.Kind(ledger.OrphanOperation)), gen.Parent(ottusim.Kind(ledger.OverRefund))
	n := 0
	for _, p := range []ottusim.Parent{orphan, over} {
		for _, w := range p.Webhooks {
			publishAt(t, pub, ottusim.Sign(w.Object, events.SchemeA, key), w.At)
			n++
		}
	}
	waitFor(t, "stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == uint64(n) })
	pass := func() ledger.Run {
		t.Helper()
		rep, err := m.Pass(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := pass(); rep.Paged < 2 || rep.AlertError != "" {
		t.Fatalf("pass 1: %+v", rep)
	}
	waitFor(t, "both findings notified", 20*time.Second, func() bool {
		return rcv.count(orphan.SessionID, ledger.OrphanOperation, "firing") > 0 && rcv.count(over.SessionID, ledger.OverRefund, "firing") > 0
	})
	l := rcv.labels(over.SessionID, ledger.OverRefund)
	if l["severity"] != "critical" || l["source"] != "ottu-recon" || l["currency"] == "" || l["gateway"] == "" {
		t.Fatalf("labels %v", l)
	}

	// The orphan's payment webhook arrives: its finding resolves.
	publishAt(t, pub, ottusim.Sign(orphan.Truth, events.SchemeA, key), time.Now())
	waitFor(t, "the payment stored", 20*time.Second, func() bool { return chtest.Count(t, db, "SELECT count() FROM webhooks_raw") == uint64(n+1) })
	pass()
	waitFor(t, "the resolved notification", 20*time.Second, func() bool {
		return rcv.count(orphan.SessionID, ledger.OrphanOperation, "resolved") > 0
	})

	// Alertmanager down; a person acknowledges the over-refund; reconcile
	// restarts; the resolved notification it owes reaches Alertmanager once
	// it is back.
	am.stop()
	evidence := ""
	if err := db.Conn().QueryRow(context.Background(), "SELECT evidence FROM findings WHERE session_id = ? AND code = ?",
		over.SessionID, string(ledger.OverRefund)).Scan(&evidence); err != nil {
		t.Fatal(err)
	}
	if err := db.Conn().Exec(context.Background(), fmt.Sprintf(`INSERT INTO finding_actions (session_id, code, action, actor, at, note, evidence, action_id)
		SELECT '%s', '%s', 'acknowledge', 'ada', now(), '', '%s', 'a1'`, over.SessionID, ledger.OverRefund, evidence)); err != nil {
		t.Fatal(err)
	}
	if rep := pass(); rep.PagesOwed != 1 || !strings.Contains(rep.AlertError, "alertmanager") {
		t.Fatalf("pass with Alertmanager down: %+v; want the resolution owed", rep)
	}
	restarted := MustOpenMain(t, m.Config)
	am.start(t)
	if rep, err := restarted.Pass(context.Background()); err != nil || rep.PagesOwed != 0 {
		t.Fatalf("pass after the restarts: %+v %v", rep, err)
	}
	waitFor(t, "the acknowledged finding resolved at the receiver", 20*time.Second, func() bool {
		return rcv.count(over.SessionID, ledger.OverRefund, "resolved") > 0
	})
}

// TestAlertmanager_HAPair: reconcile posts to both Alertmanagers of an HA
// pair; with both up, the receiver is notified once; with one down, the
// other notifies.
func TestAlertmanager_HAPair(t *testing.T) {
	rcv := &amReceiver{got: map[string]int{}, seen: map[string]map[string]string{}}
	sink := httptest.NewServer(rcv)
	defer sink.Close()
	am1, am2 := mustAlertmanagerPair(t, sink.URL)
	waitFor(t, "the pair joined", 30*time.Second, func() bool {
		return nettest.Metric(t, am1.url+"/metrics", "alertmanager_cluster_members") == 2 &&
			nettest.Metric(t, am2.url+"/metrics", "alertmanager_cluster_members") == 2
	})
	key := []byte("am-key")
	_, db, m, pub := mustRig(t, func(cfg *Config) { cfg.AlertmanagerURLs, cfg.HMACKeys = []string{am1.url, am2.url}, [][]byte{key} })
	gen := &ottusim.Generator{Now: time.Now().UTC(), Grace: 10 * time.Minute}
	first, second := gen.Parent(ottusim.Kind(ledger.OverRefund)), gen.Parent(ottusim.Kind(ledger.OverRefund))
	publishAll := func(p ottusim.Parent) {
		for _, w := range p.Webhooks {
			publishAt(t, pub, ottusim.Sign(w.Object, events.SchemeA, key), w.At)
		}
		waitFor(t, "stored", 20*time.Second, func() bool {
			return chtest.Count(t, db, "SELECT count() FROM payment_events WHERE session_id = ?", p.SessionID) > 0
		})
	}
	publishAll(first)
	if rep, err := m.Pass(context.Background()); err != nil || rep.Paged == 0 {
		t.Fatalf("pass: %+v %v", rep, err)
	}
	waitFor(t, "the receiver notified", 20*time.Second, func() bool { return rcv.count(first.SessionID, ledger.OverRefund, "firing") > 0 })
	// The second of the pair waits its peer timeout (1s) for the first's
	// notification log before it would notify: watch three of them.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n := rcv.count(first.SessionID, ledger.OverRefund, "firing"); n != 1 {
			t.Fatalf("notified %d times by the pair, want once", n)
		}
	}

	am1.stop()
	publishAll(second)
	if rep, err := m.Pass(context.Background()); err != nil || rep.Paged == 0 {
		t.Fatalf("pass with one Alertmanager down: %+v %v", rep, err)
	}
	waitFor(t, "the other notified", 30*time.Second, func() bool { return rcv.count(second.SessionID, ledger.OverRefund, "firing") > 0 })
}

// TestPrometheus_RulesMetricsExported: every metric the rules for the
// daemons (deploy/prometheus) name is one the running daemons export, with
// Ottu's API and Alertmanager configured, after a pass.
func TestPrometheus_RulesMetricsExported(t *testing.T) {
	accept := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer accept.Close()
	api := httptest.NewServer(&ottusim.API{Key: "api-key", HMACKey: []byte("k")})
	defer api.Close()
	ns, _, m, _ := mustRig(t, func(cfg *Config) {
		cfg.AlertmanagerURLs, cfg.OttuAPIURL, cfg.OttuAPIKey, cfg.HMACKeys = []string{accept.URL}, api.URL, "api-key", [][]byte{[]byte("k")}
	})
	in := mustIngest(t, ns.ClientURL(), []byte("k"), nil)
	if _, err := m.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, ingestMetrics := nettest.Get(t, in.AdminURL()+"/metrics")
	_, reconcileMetrics := nettest.Get(t, m.URL()+"/metrics")
	exported := ingestMetrics + reconcileMetrics
	rules, err := os.ReadFile(filepath.Join("..", "..", "deploy", "prometheus", "ottu-recon.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`\bottu_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) < 10 {
		t.Fatalf("only %d metric names found in the rules", len(names))
	}
	for _, name := range names {
		if !strings.Contains(exported, "\n"+name+" ") && !strings.Contains(exported, "\n"+name+"{") {
			t.Errorf("the rules name %s, which neither daemon exports", name)
		}
	}
}
