package envconfig_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/envconfig"
)

func TestList(t *testing.T) {
	if got := fmt.Sprint(envconfig.List(" a, ,b ,")); got != "[a b]" {
		t.Fatalf("got %s", got)
	}
}

func TestSecret(t *testing.T) {
	f := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(f, []byte("key with space \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var v string
	env := fromMap(map[string]string{"K_FILE": f})
	env.Secret(&v, "K")
	if env.Err() != nil || v != "key with space " {
		t.Fatalf("got %q, %v", v, env.Err())
	}
}

func TestUnknown(t *testing.T) {
	env := fromMap(nil)
	var grace, key string
	env.String(&grace, "RECON_GRACE") // what a LoadConfig reads
	env.Secret(&key, "ALERT_HMAC_KEY")
	got := env.Unknown([]string{"RECON_GRACE=1m", "RECON_GARCE=1m", "PATH=/bin", "ALERT_HMAC_KEY_FILE=/x"}, "RECON_", "ALERT_")
	if fmt.Sprint(got) != "[RECON_GARCE]" {
		t.Fatalf("got %v", got)
	}
}

// fromMap is an environment holding m alone.
func fromMap(m map[string]string) *envconfig.Env {
	return &envconfig.Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

// TestEnv_Struct: a struct's tagged fields are read as their types read, a
// secret also from its _FILE; untagged fields are left alone; a value that
// does not parse names its variable.
func TestEnv_Struct(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type conf struct {
		Name     string        `env:"X_NAME"`
		Password string        `env:"X_PASSWORD,secret"`
		On       bool          `env:"X_ON"`
		N        int           `env:"X_N"`
		Big      int64         `env:"X_BIG"`
		Wait     time.Duration `env:"X_WAIT"`
		Kept     string
	}
	c := conf{Kept: "default", N: 7}
	env := fromMap(map[string]string{"X_NAME": "ada", "X_PASSWORD_FILE": secret, "X_ON": "true", "X_BIG": "5000000000", "X_WAIT": "90s"})
	env.Struct(&c)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	want := conf{Name: "ada", Password: "s3cret", On: true, N: 7, Big: 5_000_000_000, Wait: 90 * time.Second, Kept: "default"}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	bad := fromMap(map[string]string{"X_N": "seven"})
	bad.Struct(&c)
	if err := bad.Err(); err == nil || !strings.Contains(err.Error(), "X_N") {
		t.Fatalf("a bad integer: %v", err)
	}
}
