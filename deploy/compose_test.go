// Package deploy_test checks the deployment files against the code: every
// service, binary, subcommand, variable and secret docker-compose.yml names
// must exist, since no container engine runs in CI to try it.
package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Entrypoint  []string          `yaml:"entrypoint"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []string          `yaml:"secrets"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   map[string]any    `yaml:"depends_on"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// composeFiles are the deployments ottu-recon ships.
var composeFiles = []string{"docker-compose.yml", "docker-compose.cluster.yml"}

func TestCompose(t *testing.T) {
	for _, f := range composeFiles {
		t.Run(f, func(t *testing.T) { checkCompose(t, f) })
	}
}

func checkCompose(t *testing.T, file string) {
	var c compose
	if err := yaml.Unmarshal([]byte(read(t, file)), &c); err != nil {
		t.Fatal(err)
	}
	// Both daemons read the NATS credentials (nats.Auth's tags) and LOG_LEVEL
	// (envconfig.Env.LogLevel) through these.
	natsAuth := read(t, "internal/nats/auth.go") + read(t, "internal/envconfig/envconfig.go")
	ingestConfig := read(t, "internal/ingest/config.go") + natsAuth
	reconcileConfig := read(t, "internal/reconcile/config.go") + natsAuth
	reconcileMain := read(t, "cmd/reconcile/main.go")
	ingestMain := read(t, "cmd/ingest/main.go")

	images := map[string]string{"nats": "nats:", "clickhouse": "clickhouse/clickhouse-server:", "keeper": "clickhouse/clickhouse-keeper:"}
	seen := map[string]bool{}
	for name, s := range c.Services {
		for kind, prefix := range images {
			if strings.HasPrefix(name, kind) {
				seen[kind] = true
				if !strings.HasPrefix(s.Image, prefix) {
					t.Errorf("service %s: want the official image %s*, got %q", name, prefix, s.Image)
				}
			}
		}
	}
	if !seen["nats"] || !seen["clickhouse"] {
		t.Errorf("no NATS or no ClickHouse service")
	}
	binaries := map[string]struct{ config, main string }{
		"/usr/local/bin/ingest":    {ingestConfig, ingestMain},
		"/usr/local/bin/reconcile": {reconcileConfig, reconcileMain},
	}
	apps := 0
	for want, s := range c.Services {
		if !strings.HasPrefix(s.Image, "ottu-recon") {
			continue
		}
		apps++
		if len(s.Entrypoint) == 0 {
			t.Fatalf("service %s: no entrypoint", want)
		}
		bin, ok := binaries[s.Entrypoint[0]]
		if !ok {
			t.Fatalf("service %s runs %s, which the Dockerfile does not build", want, s.Entrypoint[0])
		}
		for _, sub := range s.Entrypoint[1:] {
			if !strings.Contains(bin.main, `"`+sub+`"`) {
				t.Errorf("service %s: subcommand %q not in the code", want, sub)
			}
		}
		if s.Healthcheck != nil && len(s.Healthcheck.Test) > 2 {
			for _, part := range s.Healthcheck.Test[1:] {
				if strings.HasPrefix(part, "/usr/local/bin/") {
					if _, ok := binaries[part]; !ok {
						t.Errorf("service %s: health check runs %s", want, part)
					}
				}
			}
			if sub := s.Healthcheck.Test[2]; !strings.Contains(bin.main, `"`+sub+`"`) {
				t.Errorf("service %s: health check subcommand %q not in the code", want, sub)
			}
		}
		for name := range s.Environment {
			if strings.Contains(bin.config, `"`+name+`"`) {
				continue // read under this very name (RECON_CONSOLE_USERS_FILE names a file, not a secret's)
			}
			base := strings.TrimSuffix(name, "_FILE")
			if !strings.Contains(bin.config, `"`+base+`"`) && !strings.Contains(bin.config, `env:"`+base+`,`) {
				t.Errorf("service %s: variable %s is not read by %s", want, name, s.Entrypoint[0])
			}
			if base != name && !regexp.MustCompile(`env\.Secret\(&[^,]+, "`+base+`"\)|env:"`+base+`,secret"`).MatchString(bin.config) {
				t.Errorf("service %s: %s given as a file, but %s is not read as a secret", want, name, base)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := c.Secrets[sec]; !ok {
				t.Errorf("service %s: secret %s not declared", want, sec)
			}
		}
	}
	for name, s := range c.Services {
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("service %s depends on unknown service %s", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("service %s: volume %s not declared", name, src)
			}
		}
	}
	if apps < 3 {
		t.Errorf("%d ottu-recon services, want ingest, reconcile migrate and reconcile serve", apps)
	}
	for name, s := range c.Services {
		if len(s.Entrypoint) == 2 && s.Entrypoint[1] == "serve" && s.DependsOn["reconcile-migrate"] == nil {
			t.Errorf("%s: reconcile serve must start after reconcile migrate", name)
		}
	}
}

func TestDockerfile(t *testing.T) {
	d := read(t, "Dockerfile")
	for _, want := range []string{"AS build", "CGO_ENABLED=0", "./cmd/ingest", "./cmd/reconcile", "USER nonroot"} {
		if !strings.Contains(d, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestComposeConfig runs docker-compose's own validation where it is installed.
func TestComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		msg := "docker-compose not installed: apt-get install docker-compose to validate the file with it (.ci/run does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, f := range composeFiles {
		t.Run(f, func(t *testing.T) { composeConfig(t, bin, f) })
	}
}

func composeConfig(t *testing.T, bin, file string) {
	dir := t.TempDir()
	for _, f := range []string{file, "deploy/nats.conf", "deploy/clickhouse-cluster/cluster.xml", "deploy/clickhouse-cluster/keeper.xml"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(read(t, f)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"ottu_hmac_keys", "alert_hmac_key", "clickhouse_password", "nats_ingest_password", "nats_reconcile_password", "console_users"} {
		if err := os.WriteFile(filepath.Join(dir, "secrets", s), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-f", file, "config", "-q")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}

// TestReadmeNamesTheProduct: every variable and finding code of the public
// contract (docs/product.md) is in the README.
func TestReadmeNamesTheProduct(t *testing.T) {
	product := read(t, "docs/product.md")
	readme := read(t, "README.md")
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]+)`").FindAllStringSubmatch(product, -1) {
		if !strings.Contains(readme, "`"+m[1]+"`") {
			t.Errorf("README does not document %s", m[1])
		}
	}
}
