package reconcile

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/alert"
	"github.com/ottu-recon/ottu-recon/internal/envconfig"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
	"github.com/ottu-recon/ottu-recon/internal/nats"
	"github.com/ottu-recon/ottu-recon/internal/ottuapi"
)

// Config is everything reconcile reads from its environment (docs/product.md,
// "reconcile", plus the RECON_* knobs documented in the README).
type Config struct {
	NATSURL  string `env:"NATS_URL"`
	NATSAuth nats.Auth
	Stream   nats.StreamConfig

	ClickHouseAddrs    []string
	ClickHouseDatabase string `env:"CLICKHOUSE_DATABASE"`
	ClickHouseUsername string `env:"CLICKHOUSE_USERNAME"`
	ClickHousePassword string `env:"CLICKHOUSE_PASSWORD,secret"` // never logged
	ClickHouseCluster  string `env:"CLICKHOUSE_CLUSTER"`
	InsertQuorum       int    `env:"CLICKHOUSE_INSERT_QUORUM"` // replicas an insert waits for (default 2 on a cluster)
	ClickHouseTLS      bool   `env:"CLICKHOUSE_TLS"`
	ClickHouseTLSCA    string `env:"CLICKHOUSE_TLS_CA_FILE"`

	Schedule           string        `env:"RECON_SCHEDULE"`
	Grace              time.Duration `env:"RECON_GRACE"`
	OrderGrace         time.Duration `env:"RECON_ORDER_GRACE"` // the completeness sweep asks about an order this long after its updated_at
	OrderWatch         time.Duration `env:"RECON_ORDER_WATCH"` // and watches an order, or a parent with no final state, this long
	StaleAuthorization time.Duration `env:"RECON_STALE_AUTHORIZATION"`
	StuckRefund        time.Duration `env:"RECON_STUCK_REFUND"`
	Environment        string        `env:"OTTU_ENVIRONMENT"` // live or sandbox
	PassTimeout        time.Duration `env:"RECON_PASS_TIMEOUT"`
	FullEvery          time.Duration `env:"RECON_FULL_EVERY"`
	LeaseTTL           time.Duration `env:"RECON_LEASE_TTL"`

	AlertURL     string `env:"ALERT_WEBHOOK_URL"`
	AlertHMACKey string `env:"ALERT_HMAC_KEY,secret"` // never logged

	OttuAPIURL string   `env:"OTTU_API_URL"`
	OttuAPIKey string   `env:"OTTU_API_KEY,secret"` // never logged
	HMACKeys   [][]byte // OTTU_HMAC_KEYS: verify Ottu's answers; never logged

	Listen          string        `env:"RECON_LISTEN"`
	Consumer        string        `env:"RECON_CONSUMER"`
	BatchSize       int           `env:"RECON_BATCH_SIZE"`
	BatchMaxBytes   int           `env:"RECON_BATCH_MAX_BYTES"`
	BatchWait       time.Duration `env:"RECON_BATCH_WAIT"`
	ShutdownTimeout time.Duration `env:"RECON_SHUTDOWN_TIMEOUT"`
	LogLevel        zerolog.Level
	// Console is the findings console (docs/console.md).
	Console ConsoleConfig
	// Alertmanager: findings are posted to each URL's v2 API as alerts.
	Alertmanager     AlertmanagerConfig
	AlertmanagerURLs []string // Alertmanager.URLs, split
}

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() Config {
	return Config{
		NATSURL:            "nats://127.0.0.1:4222",
		Stream:             nats.DefaultStreamConfig(),
		ClickHouseAddrs:    []string{"127.0.0.1:9000"},
		ClickHouseDatabase: "ottu_recon",
		ClickHouseUsername: "default",
		Schedule:           "*/5 * * * *",
		Grace:              10 * time.Minute,
		OrderGrace:         30 * time.Minute,
		OrderWatch:         72 * time.Hour,
		StaleAuthorization: 168 * time.Hour,
		StuckRefund:        48 * time.Hour,
		Environment:        "live",
		PassTimeout:        4 * time.Minute,
		FullEvery:          24 * time.Hour,
		LeaseTTL:           30 * time.Second,
		Listen:             ":8081",
		Consumer:           "ottu-recon-store",
		BatchSize:          5000,
		BatchMaxBytes:      256 << 20,
		BatchWait:          time.Second,
		ShutdownTimeout:    30 * time.Second,
		LogLevel:           zerolog.InfoLevel,
	}
}

// LoadConfig reads env on top of DefaultConfig and validates the result.
func LoadConfig(env *envconfig.Env) (Config, error) {
	c := DefaultConfig()
	var addrs string
	env.Struct(&c)
	env.Struct(&c.NATSAuth)
	env.Check("NATS_USER", c.NATSAuth.Validate())
	env.String(&c.Stream.Name, "NATS_STREAM")
	env.String(&c.Stream.SubjectPrefix, "NATS_SUBJECT_PREFIX")
	env.Int(&c.Stream.Replicas, "NATS_STREAM_REPLICAS") // of the findings stream and the lease bucket too
	env.String(&addrs, "CLICKHOUSE_ADDR")
	env.Struct(&c.Console)
	env.Struct(&c.Alertmanager)
	c.AlertmanagerURLs = envconfig.List(c.Alertmanager.URLs)
	var keys string
	env.Secret(&keys, "OTTU_HMAC_KEYS")
	for _, k := range envconfig.List(keys) {
		c.HMACKeys = append(c.HMACKeys, []byte(k))
	}
	env.LogLevel(&c.LogLevel)
	if addrs != "" {
		c.ClickHouseAddrs = envconfig.List(addrs)
	}
	if len(c.ClickHouseAddrs) == 0 {
		env.Check("CLICKHOUSE_ADDR", errors.New("required"))
	}
	if _, err := cronParser.Parse(c.Schedule); err != nil {
		env.Check("RECON_SCHEDULE", fmt.Errorf("not a cron spec: %w", err))
	}
	if c.OrderGrace < ledger.OttuThrottle.NotBefore {
		// Ottu refuses a question within 10 minutes of a payment's creation.
		env.Check("RECON_ORDER_GRACE", fmt.Errorf("want at least %s (Ottu's throttle), got %s", ledger.OttuThrottle.NotBefore, c.OrderGrace))
	}
	if c.OrderWatch <= c.OrderGrace {
		env.Check("RECON_ORDER_WATCH", fmt.Errorf("want more than RECON_ORDER_GRACE (%s), got %s", c.OrderGrace, c.OrderWatch))
	}
	if _, err := c.Console.Proxies(); err != nil {
		env.Check("RECON_CONSOLE_TRUSTED_PROXIES", err)
	}
	if c.Environment != "live" && c.Environment != "sandbox" {
		env.Check("OTTU_ENVIRONMENT", fmt.Errorf("want live or sandbox, got %q", c.Environment))
	}
	if c.AlertURL != "" {
		if u, err := url.Parse(c.AlertURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			env.Check("ALERT_WEBHOOK_URL", errors.New("want an http(s) URL")) // the URL itself may hold a token: not repeated
		}
	}
	for _, u := range c.AlertmanagerURLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			env.Check("ALERTMANAGER_URL", errors.New("want http(s) URLs, comma-separated"))
		}
	}
	if c.Alertmanager.BearerToken != "" && c.Alertmanager.Username != "" {
		env.Check("ALERTMANAGER_BEARER_TOKEN", errors.New("set a bearer token or a username and password, not both"))
	}
	if c.BatchMaxBytes < 4<<20 {
		env.Check("RECON_BATCH_MAX_BYTES", fmt.Errorf("want at least 4194304 (a few of the largest webhooks), got %d", c.BatchMaxBytes))
	}
	if c.AlertHMACKey != "" {
		env.Check("ALERT_HMAC_KEY", alert.CheckKey([]byte(c.AlertHMACKey)))
	}
	if c.BatchSize < 1 || c.BatchSize > 100000 {
		env.Check("RECON_BATCH_SIZE", fmt.Errorf("want 1 to 100000, got %d", c.BatchSize))
	}
	if (c.OttuAPIURL == "") != (c.OttuAPIKey == "") {
		env.Check("OTTU_API_URL", errors.New("set OTTU_API_URL and OTTU_API_KEY together, or neither"))
	}
	if c.OttuAPIURL != "" {
		env.Check("OTTU_API_URL", ottuapi.CheckURL(c.OttuAPIURL))
		if len(c.HMACKeys) == 0 {
			env.Check("OTTU_HMAC_KEYS", errors.New("required with OTTU_API_URL: Ottu's answers are verified with the webhook keys"))
		}
	}
	if c.ClickHouseCluster != "" && c.InsertQuorum == 0 {
		c.InsertQuorum = 2 // one replica's loss loses no acknowledged webhook
	}
	if c.InsertQuorum < 0 {
		env.Check("CLICKHOUSE_INSERT_QUORUM", errors.New("must not be negative (1: no quorum)"))
	}
	if c.ClickHouseTLSCA != "" && !c.ClickHouseTLS {
		env.Check("CLICKHOUSE_TLS_CA_FILE", errors.New("set CLICKHOUSE_TLS=true too"))
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		env.Check("NATS_STREAM_REPLICAS", fmt.Errorf("want 1 to 5, got %d", c.Stream.Replicas))
	}
	if c.LeaseTTL < time.Second {
		env.Check("RECON_LEASE_TTL", errors.New("must be at least 1s"))
	}
	if c.FullEvery < 0 {
		env.Check("RECON_FULL_EVERY", errors.New("must not be negative (0: only the first pass is full)"))
	}
	if c.ClickHouseDatabase == "" {
		env.Check("CLICKHOUSE_DATABASE", errors.New("required"))
	}
	if c.Console.Listen != "" && c.Console.UsersFile == "" {
		env.Check("RECON_CONSOLE_USERS_FILE", errors.New("required with RECON_CONSOLE_LISTEN: sign-in is always required (reconcile console-user adds a user)"))
	}
	if (c.Console.TLSCertFile == "") != (c.Console.TLSKeyFile == "") {
		env.Check("RECON_CONSOLE_TLS_CERT_FILE", errors.New("set RECON_CONSOLE_TLS_CERT_FILE and RECON_CONSOLE_TLS_KEY_FILE together, or neither"))
	}
	if c.Console.URL != "" {
		if u, err := url.Parse(c.Console.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			env.Check("RECON_CONSOLE_URL", errors.New("want the console's http(s) base URL"))
		}
		c.Console.URL = strings.TrimRight(c.Console.URL, "/")
	}
	if err := env.Err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// cronParser accepts 5 fields, or 6 with seconds first (docs/product.md: "seconds optional").
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// VarPrefixes are the prefixes of this daemon's own variables: a variable
// with one of them that LoadConfig did not read is likely a typo
// (envconfig.Env.Unknown).
var VarPrefixes = []string{"RECON_", "CLICKHOUSE_", "ALERT_", "ALERTMANAGER_"}

// AlertmanagerConfig is how reconcile reaches Prometheus Alertmanager
// (docs/alertmanager.md), read from the environment by its tags.
type AlertmanagerConfig struct {
	URLs        string `env:"ALERTMANAGER_URL"` // comma-separated: an HA pair gets every alert
	Username    string `env:"ALERTMANAGER_USERNAME"`
	Password    string `env:"ALERTMANAGER_PASSWORD,secret"`
	BearerToken string `env:"ALERTMANAGER_BEARER_TOKEN,secret"`
	TLSCAFile   string `env:"ALERTMANAGER_TLS_CA_FILE"`
}

// ConsoleConfig is the findings console's configuration (docs/console.md),
// read from the environment by its tags.
type ConsoleConfig struct {
	// Listen is the console's address; off when empty.
	Listen string `env:"RECON_CONSOLE_LISTEN"`
	// UsersFile lists who may sign in (NAME ROLE BCRYPT-HASH a line); read
	// again when it changes.
	UsersFile string `env:"RECON_CONSOLE_USERS_FILE"`
	// TLSCertFile and TLSKeyFile serve the console over HTTPS.
	TLSCertFile string `env:"RECON_CONSOLE_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"RECON_CONSOLE_TLS_KEY_FILE"`
	// URL is the console's public base URL: alerts then carry a
	// console_url per finding; when https, the session cookie is Secure
	// (behind a TLS-terminating proxy too).
	URL string `env:"RECON_CONSOLE_URL"`
	// TrustedProxies are addresses or CIDRs of the proxies in front of the
	// console, comma-separated: their X-Forwarded-For is believed.
	TrustedProxies string `env:"RECON_CONSOLE_TRUSTED_PROXIES"`
}

// Proxies parses TrustedProxies: an address stands for itself.
func (c ConsoleConfig) Proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range envconfig.List(c.TrustedProxies) {
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR", item)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
