package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/nats"
)

// Config is everything ingest reads from its environment (docs/product.md, "ingest",
// plus the INGEST_* and NATS_STREAM_* knobs documented in the README).
type Config struct {
	Listen      string
	AdminListen string   // INGEST_ADMIN_LISTEN: health and metrics here, not on Listen
	HMACKeys    [][]byte // never logged

	MaxConnections      int    // INGEST_MAX_CONNECTIONS: requests in progress (idle keep-alives make room)
	MaxBodyBytes        int64  // INGEST_MAX_BODY_BYTES_IN_FLIGHT: bytes of bodies being read at once
	TLSCertFile         string // INGEST_TLS_CERT_FILE
	TLSKeyFile          string // INGEST_TLS_KEY_FILE
	RejectedBytesPerMin int    // INGEST_REJECTED_BYTES_PER_MINUTE: rejected bodies kept; 0 keeps all

	NATSURL        string
	NATSAuth       nats.Auth // NATS_CREDS_FILE, NATS_USER, ...; with NATS_EMBEDDED they protect its listener
	NATSEmbedded   bool
	NATSListen     string
	NATSStoreDir   string
	NATSSyncAlways bool // NATS_SYNC_ALWAYS
	Stream         nats.StreamConfig

	SpoolDir        string
	SpoolMaxBytes   int64
	PublishTimeout  time.Duration
	ShutdownTimeout time.Duration
	LogLevel        zerolog.Level
}

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() Config {
	return Config{
		Listen:              ":8080",
		MaxConnections:      1024,
		MaxBodyBytes:        64 << 20,
		RejectedBytesPerMin: 64 << 20,
		NATSURL:             "nats://127.0.0.1:4222",
		NATSListen:          "127.0.0.1:4222",
		NATSStoreDir:        "./data/nats",
		Stream:              nats.DefaultStreamConfig(),
		SpoolDir:            "./data/spool",
		SpoolMaxBytes:       1 << 30,
		PublishTimeout:      2 * time.Second,
		ShutdownTimeout:     20 * time.Second,
		LogLevel:            zerolog.InfoLevel,
	}
}

// LoadConfig reads env on top of DefaultConfig and validates the result.
func LoadConfig(env *envconfig.Env) (Config, error) {
	c := DefaultConfig()
	var keys string
	env.String(&c.Listen, "INGEST_LISTEN")
	env.String(&c.AdminListen, "INGEST_ADMIN_LISTEN")
	env.Int(&c.MaxConnections, "INGEST_MAX_CONNECTIONS")
	env.Int64(&c.MaxBodyBytes, "INGEST_MAX_BODY_BYTES_IN_FLIGHT")
	env.String(&c.TLSCertFile, "INGEST_TLS_CERT_FILE")
	env.String(&c.TLSKeyFile, "INGEST_TLS_KEY_FILE")
	env.Int(&c.RejectedBytesPerMin, "INGEST_REJECTED_BYTES_PER_MINUTE")
	env.Secret(&keys, "OTTU_HMAC_KEYS")
	env.String(&c.NATSURL, "NATS_URL")
	env.Struct(&c.NATSAuth)
	env.Check("NATS_USER", c.NATSAuth.Validate())
	env.Bool(&c.NATSEmbedded, "NATS_EMBEDDED")
	env.String(&c.NATSListen, "NATS_LISTEN")
	env.String(&c.NATSStoreDir, "NATS_STORE_DIR")
	env.Bool(&c.NATSSyncAlways, "NATS_SYNC_ALWAYS")
	env.String(&c.Stream.Name, "NATS_STREAM")
	env.String(&c.Stream.SubjectPrefix, "NATS_SUBJECT_PREFIX")
	env.Int(&c.Stream.Replicas, "NATS_STREAM_REPLICAS")
	env.Duration(&c.Stream.MaxAge, "NATS_STREAM_MAX_AGE")
	env.Int64(&c.Stream.MaxBytes, "NATS_STREAM_MAX_BYTES")
	env.Duration(&c.Stream.Duplicates, "NATS_DEDUP_WINDOW")
	env.String(&c.SpoolDir, "INGEST_SPOOL_DIR")
	env.Int64(&c.SpoolMaxBytes, "INGEST_SPOOL_MAX_BYTES")
	env.Duration(&c.PublishTimeout, "INGEST_PUBLISH_TIMEOUT")
	env.Duration(&c.ShutdownTimeout, "INGEST_SHUTDOWN_TIMEOUT")
	env.LogLevel(&c.LogLevel)
	for _, k := range envconfig.List(keys) {
		c.HMACKeys = append(c.HMACKeys, []byte(k))
	}
	if len(c.HMACKeys) == 0 {
		env.Check("OTTU_HMAC_KEYS", errors.New("required: the HMAC key(s) from Ottu's webhook configuration, comma-separated"))
	}
	env.Check("NATS_STREAM", c.Stream.Validate())
	if c.SpoolDir == "" {
		env.Check("INGEST_SPOOL_DIR", errors.New("required"))
	}
	if c.NATSEmbedded && (c.NATSAuth.CredsFile != "" || c.NATSAuth.NKeySeedFile != "") {
		env.Check("NATS_EMBEDDED", errors.New("the embedded server is protected by NATS_USER with NATS_PASSWORD, or NATS_TOKEN"))
	}
	if c.MaxConnections < 1 {
		env.Check("INGEST_MAX_CONNECTIONS", errors.New("must be at least 1"))
	}
	if c.MaxBodyBytes < 1<<20 {
		env.Check("INGEST_MAX_BODY_BYTES_IN_FLIGHT", errors.New("must be at least 1048576 (one body of the largest size)"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		env.Check("INGEST_TLS_CERT_FILE", errors.New("set it and INGEST_TLS_KEY_FILE together, or neither"))
	}
	if c.RejectedBytesPerMin < 0 {
		env.Check("INGEST_REJECTED_BYTES_PER_MINUTE", errors.New("must not be negative"))
	}
	if err := env.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// VarPrefixes are the prefixes of this daemon's own variables: a variable
// with one of them that LoadConfig did not read is likely a typo
// (envconfig.Env.Unknown).
var VarPrefixes = []string{"INGEST_", "NATS_STREAM_", "OTTU_HMAC"}

func (c Config) String() string {
	return fmt.Sprintf("listen=%s keys=%d nats=%s embedded=%v stream=%s spool=%s",
		c.Listen, len(c.HMACKeys), nats.RedactURL(c.NATSURL), c.NATSEmbedded, c.Stream.Name, c.SpoolDir)
}
