package chtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ottu-recon/ottu-recon/internal/nettest"
)

// SecretUser and SecretPassword are a user StartServer's servers have besides
// default (which has no password), for tests of credential handling.
const (
	SecretUser     = "secretive"
	SecretPassword = "ch-Pa55-S3CRET"
)

// Server is a ClickHouse server StartServer started.
type Server struct {
	Addr     string // native protocol
	HTTPAddr string
}

// StartServer starts a ClickHouse server of its own for one test, in the
// given time zone (the server's <timezone>), on a free loopback port with its
// data in a temporary directory, and stops it when the test ends. It needs Debian's clickhouse-server, which
// `make test` installs (scripts/clickhouse.sh); without it the test is
// skipped, or fails under CI=true.
func StartServer(tb testing.TB, timezone string) Server {
	tb.Helper()
	return startServer(tb, timezone, nettest.FreePort(tb), "")
}

func startServer(tb testing.TB, timezone string, port int, extra string) Server {
	tb.Helper()
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		msg := "clickhouse-server is not installed: run `make test` (scripts/clickhouse.sh installs it)"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	dir := tb.TempDir()
	httpPort := nettest.FreePort(tb)
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			tb.Fatal(err)
		}
	}
	config := fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>%[1]s/log/server.log</log><errorlog>%[1]s/log/server.err.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>%[2]d</tcp_port>
  <http_port>%[3]d</http_port>
  <path>%[1]s/data/</path>
  <tmp_path>%[1]s/tmp/</tmp_path>
  <user_files_path>%[1]s/user_files/</user_files_path>
  <format_schema_path>%[1]s/format_schemas/</format_schema_path>
  <users_config>%[1]s/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>%[4]s</timezone>
  <mark_cache_size>67108864</mark_cache_size>
%[5]s
</yandex>`, dir, port, httpPort, timezone, extra)
	users := `<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <` + SecretUser + `><password>` + SecretPassword + `</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></` + SecretUser + `>
  </users>
  <quotas><default></default></quotas>
</yandex>`
	for name, text := range map[string]string{"config.xml": config, "users.xml": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o640); err != nil {
			tb.Fatal(err)
		}
	}
	logFile, err := os.Create(filepath.Join(dir, "log", "stdout.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file="+filepath.Join(dir, "config.xml"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		if tb.Failed() { // what the server said helps more than the client's error
			for _, name := range []string{"server.err.log", "stdout.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, "log", name)); err == nil && len(b) > 0 {
					tb.Logf("clickhouse-server %d %s (last 3 KiB):\n%s", port, name, b[max(0, len(b)-3072):])
				}
			}
		}
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := ch.Open(&ch.Options{Addr: []string{addr}, DialTimeout: time.Second})
		if err == nil {
			err = conn.Ping(context.Background())
			conn.Close()
		}
		if err == nil {
			return Server{Addr: addr, HTTPAddr: "127.0.0.1:" + strconv.Itoa(httpPort)}
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logFile.Name())
			tb.Fatalf("clickhouse-server (%s) exited: %v\n%s", timezone, err, out)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("clickhouse-server (%s) did not answer on %s within 60s: %v", timezone, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
