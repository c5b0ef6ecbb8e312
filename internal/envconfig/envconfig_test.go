package envconfig_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

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
