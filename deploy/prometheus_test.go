package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tool returns the path of a Prometheus tool (Debian's prometheus and
// prometheus-alertmanager packages, which scripts/prometheus.sh installs).
func tool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed: scripts/prometheus.sh installs it", name)
		}
		t.Skipf("%s not installed: run under scripts/prometheus.sh", name)
	}
	return bin
}

func run(t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

// TestPrometheus: the rules for the daemons pass promtool's check and their
// unit tests (each rule firing and not firing); the Prometheus and
// Alertmanager configurations docker-compose.yml mounts pass promtool's and
// amtool's checks.
func TestPrometheus(t *testing.T) {
	promtool, amtool := tool(t, "promtool"), tool(t, "amtool")
	run(t, "prometheus", promtool, "check", "rules", "ottu-recon.rules.yml")
	run(t, "prometheus", promtool, "test", "rules", "ottu-recon.rules_test.yml")
	run(t, "alertmanager", amtool, "check-config", "alertmanager.yml")
	// The configuration names the rules where the container mounts them.
	dir := t.TempDir()
	config, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join("prometheus", "ottu-recon.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(config), "/etc/prometheus/rules/ottu-recon.rules.yml") {
		t.Fatal("prometheus.yml does not load the rules where docker-compose.yml mounts them")
	}
	local := strings.ReplaceAll(string(config), "/etc/prometheus/rules/", dir+"/")
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ottu-recon.rules.yml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, dir, promtool, "check", "config", "prometheus.yml")
}
