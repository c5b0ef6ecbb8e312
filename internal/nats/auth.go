package nats

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/ottu-recon/ottu-recon/internal/envconfig"
)

// Auth is how a daemon authenticates to NATS and secures the connection
// (docs/product.md: NATS_CREDS_FILE, NATS_NKEY_SEED_FILE, NATS_USER with
// NATS_PASSWORD, NATS_TOKEN, NATS_TLS_*). At most one way of authenticating.
type Auth struct {
	CredsFile    string // a JWT credentials file
	NKeySeedFile string
	User         string
	Password     string // never logged
	Token        string // never logged
	CAFile       string // TLS: the CA that signed the server's certificate
	CertFile     string // TLS: a client certificate, with KeyFile
	KeyFile      string
}

// ReadAuth reads Auth from env (secrets also from a _FILE) and checks it.
func ReadAuth(env *envconfig.Env) Auth {
	var a Auth
	env.String(&a.CredsFile, "NATS_CREDS_FILE")
	env.String(&a.NKeySeedFile, "NATS_NKEY_SEED_FILE")
	env.String(&a.User, "NATS_USER")
	env.Secret(&a.Password, "NATS_PASSWORD")
	env.Secret(&a.Token, "NATS_TOKEN")
	env.String(&a.CAFile, "NATS_TLS_CA_FILE")
	env.String(&a.CertFile, "NATS_TLS_CERT_FILE")
	env.String(&a.KeyFile, "NATS_TLS_KEY_FILE")
	env.Check("NATS_USER", a.Validate())
	return a
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
