package ingest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/envconfig"
)

func TestLoadConfig_OK(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("k1,k2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(fromMap(map[string]string{
		"OTTU_HMAC_KEYS_FILE": keyFile, "NATS_EMBEDDED": "true", "NATS_STREAM_MAX_AGE": "48h",
		"INGEST_PUBLISH_TIMEOUT": "3s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.HMACKeys) != 2 || string(cfg.HMACKeys[1]) != "k2" {
		t.Fatalf("keys: got %q", cfg.HMACKeys)
	}
	if !cfg.NATSEmbedded || cfg.Stream.MaxAge != 48*time.Hour || cfg.PublishTimeout != 3*time.Second || cfg.Listen != ":8080" {
		t.Fatalf("got %+v", cfg)
	}
	if strings.Contains(cfg.String(), "k1") {
		t.Fatal("String must not show keys")
	}
}

func TestLoadConfig_Err(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // the variable the error names
	}{
		{"no keys", map[string]string{}, "OTTU_HMAC_KEYS"},
		{"only commas", map[string]string{"OTTU_HMAC_KEYS": " , "}, "OTTU_HMAC_KEYS"},
		{"both key sources", map[string]string{"OTTU_HMAC_KEYS": "k", "OTTU_HMAC_KEYS_FILE": "/x"}, "OTTU_HMAC_KEYS"},
		{"missing key file", map[string]string{"OTTU_HMAC_KEYS_FILE": "/nonexistent/keys"}, "OTTU_HMAC_KEYS_FILE"},
		{"bad bool", map[string]string{"OTTU_HMAC_KEYS": "k", "NATS_EMBEDDED": "yes please"}, "NATS_EMBEDDED"},
		{"bad duration", map[string]string{"OTTU_HMAC_KEYS": "k", "INGEST_PUBLISH_TIMEOUT": "2"}, "INGEST_PUBLISH_TIMEOUT"},
		{"dedup beyond age", map[string]string{"OTTU_HMAC_KEYS": "k", "NATS_DEDUP_WINDOW": "200h"}, "NATS_STREAM"},
		{"replicas", map[string]string{"OTTU_HMAC_KEYS": "k", "NATS_STREAM_REPLICAS": "0"}, "NATS_STREAM"},
		{"log level", map[string]string{"OTTU_HMAC_KEYS": "k", "LOG_LEVEL": "loud"}, "LOG_LEVEL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(fromMap(tt.env))
			var e *envconfig.Error
			if !errors.As(err, &e) || !errors.Is(err, envconfig.ErrInvalid) || e.Var != tt.want {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// fromMap is an environment holding m alone.
func fromMap(m map[string]string) *envconfig.Env {
	return &envconfig.Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}
