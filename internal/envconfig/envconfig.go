// Package envconfig reads daemon configuration from environment variables,
// the way docs/product.md describes: a secret may instead come from a file named by
// the same variable with a _FILE suffix. Errors name the variable.
package envconfig

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Error names the offending variable.
type Error struct {
	Var string
	Err error
}

func (e *Error) Error() string { return e.Var + ": " + e.Err.Error() }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *Error) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// Env reads variables from a lookup function (os.LookupEnv in production, a
// map in tests) and collects the first error.
type Env struct {
	Lookup func(string) (string, bool)
	err    error
	read   map[string]bool // every name asked for: the daemon's variables, listed once
}

// OS reads the process environment.
func OS() *Env { return &Env{Lookup: os.LookupEnv} }

// Err is the first error met.
func (e *Env) Err() error { return e.err }

func (e *Env) fail(name string, err error) {
	if e.err == nil {
		e.err = &Error{Var: name, Err: err}
	}
}

func (e *Env) get(name string) (string, bool) {
	if e.read == nil {
		e.read = map[string]bool{}
	}
	e.read[strings.TrimSuffix(name, "_FILE")] = true
	v, ok := e.Lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// String sets *dst from name when it is set.
func (e *Env) String(dst *string, name string) {
	if v, ok := e.get(name); ok {
		*dst = v
	}
}

// Secret reads name, or the file named by name_FILE (trailing newline
// trimmed). Setting both is an error.
func (e *Env) Secret(dst *string, name string) {
	v, ok := e.get(name)
	path, fok := e.get(name + "_FILE")
	switch {
	case ok && fok:
		e.fail(name, errors.New("set either "+name+" or "+name+"_FILE, not both"))
	case fok:
		b, err := os.ReadFile(path)
		if err != nil {
			e.fail(name+"_FILE", fmt.Errorf("read secret file: %w", err))
			return
		}
		*dst = strings.TrimRight(string(b), "\r\n")
	case ok:
		*dst = v
	}
}

// LogLevel sets *dst from LOG_LEVEL (zerolog's names: debug, info, warn,
// error).
func (e *Env) LogLevel(dst *zerolog.Level) {
	if v, ok := e.get("LOG_LEVEL"); ok {
		l, err := zerolog.ParseLevel(v)
		if err != nil {
			e.fail("LOG_LEVEL", err)
			return
		}
		*dst = l
	}
}

// ReadSecret reads one secret from the process environment (Secret), for a
// command that needs nothing else from it.
func ReadSecret(name string) (string, error) {
	var v string
	e := OS()
	e.Secret(&v, name)
	return v, e.Err()
}

// Bool sets *dst from name (true/false/1/0).
func (e *Env) Bool(dst *bool, name string) {
	if v, ok := e.get(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.fail(name, fmt.Errorf("want true or false, got %q", v))
			return
		}
		*dst = b
	}
}

// Int sets *dst from name.
func (e *Env) Int(dst *int, name string) {
	integer(e, dst, name, func(v string) (int, error) { return strconv.Atoi(v) })
}

// Int64 sets *dst from name.
func (e *Env) Int64(dst *int64, name string) {
	integer(e, dst, name, func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) })
}

func integer[T int | int64](e *Env, dst *T, name string, parse func(string) (T, error)) {
	if v, ok := e.get(name); ok {
		n, err := parse(v)
		if err != nil {
			e.fail(name, fmt.Errorf("want an integer, got %q", v))
			return
		}
		*dst = n
	}
}

// Duration sets *dst from name (Go syntax: 10m, 168h, 1h30m).
func (e *Env) Duration(dst *time.Duration, name string) {
	if v, ok := e.get(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			e.fail(name, fmt.Errorf("want a positive duration such as 10m or 168h, got %q", v))
			return
		}
		*dst = d
	}
}

// Struct fills the fields of the struct dst points to from the variables
// their `env` tags name, each as its type reads: `env:"NATS_USER"` a
// string (String), `env:"NATS_PASSWORD,secret"` a secret (Secret), and
// bool, int, int64 and time.Duration fields as Bool, Int, Int64 and Duration
// do. A configuration declares its variables this way; the daemons'
// loaders read them, so that only this package reads the environment.
func (e *Env) Struct(dst any) {
	v := reflect.ValueOf(dst).Elem()
	for i := range v.NumField() {
		tag, ok := v.Type().Field(i).Tag.Lookup("env")
		if !ok {
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		switch field := v.Field(i).Addr().Interface().(type) {
		case *string:
			if opt == "secret" {
				e.Secret(field, name)
			} else {
				e.String(field, name)
			}
		case *bool:
			e.Bool(field, name)
		case *int:
			e.Int(field, name)
		case *time.Duration:
			e.Duration(field, name)
		case *int64:
			e.Int64(field, name)
		default:
			panic(fmt.Sprintf("envconfig: %s: a field of type %T cannot be read", name, field))
		}
	}
}

// Check records err against name when err is not nil, for validation rules
// beyond parsing.
func (e *Env) Check(name string, err error) {
	if err != nil {
		e.fail(name, err)
	}
}

// Unknown lists the variables in environ that start with one of prefixes but
// that nothing read from e: most likely typos, worth a warning. Call it after
// the configuration was loaded from e.
func (e *Env) Unknown(environ []string, prefixes ...string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		name = strings.TrimSuffix(name, "_FILE")
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) && !e.read[name] {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// List splits a comma-separated value, dropping empty items.
func List(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
