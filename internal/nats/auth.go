package nats

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Auth is how a daemon authenticates to NATS and secures the connection
// (docs/product.md: NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_USER with
// NATS_PASSWORD, NATS_TOKEN, NATS_TLS_*), read by the daemons' loaders (envconfig.Env.Struct). At most one
// way of authenticating.
type Auth struct {
	CredsFile    string `env:"NATS_CREDS_FILE"` // a JWT credentials file
	NKeySeedFile string `env:"NATS_NKEY_SEED_FILE"`
	User         string `env:"NATS_USER"`
	Password     string `env:"NATS_PASSWORD,secret"` // never logged
	Token        string `env:"NATS_TOKEN,secret"`    // never logged
	CAFile       string `env:"NATS_TLS_CA_FILE"`     // TLS: the CA that signed the server's certificate
	CertFile     string `env:"NATS_TLS_CERT_FILE"`   // TLS: a client certificate, with KeyFile
	KeyFile      string `env:"NATS_TLS_KEY_FILE"`
}

// Validate names what does not fit together.
func (a Auth) Validate() error {
	ways := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeySeedFile != "", a.User != "", a.Token != ""} {
		if set {
			ways++
		}
	}
	switch {
	case ways > 1:
		return errors.New("set one of NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_USER (with NATS_PASSWORD) and NATS_TOKEN")
	case a.Password != "" && a.User == "":
		return errors.New("NATS_PASSWORD needs NATS_USER")
	case (a.CertFile == "") != (a.KeyFile == ""):
		return errors.New("set NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE together")
	}
	return nil
}

// options turns Auth into nats.go options.
func (a Auth) options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("read NATS nkey seed: %w", err)
		}
		opts = append(opts, opt)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" {
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	return opts, nil
}
