// Package console is the findings console's own business: who may sign in
// and with which role (docs/console.md). This file holds the users file.
//
// RECON_CONSOLE_USERS_FILE holds one user a line: a name, a role (viewer or
// operator) and a bcrypt hash of the password, separated by spaces. Blank
// lines and lines starting with # are ignored. `reconcile console-user NAME
// ROLE` adds a user or changes one's role and password (read from stdin), and
// writes the file again whole (a temporary file renamed over it, mode 0600).
package console

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/bcrypt"
)

// Role is what a user may do.
type Role string

// The roles.
const (
	Viewer   Role = "viewer"   // reads findings and payments; customer data masked
	Operator Role = "operator" // also acknowledges, resolves, mutes and notes
)

// User is one line of the users file.
type User struct {
	Name string
	Role Role
	hash []byte
}

// Credential is a digest of the user's password hash, which a session
// keeps so that a new password ends it; never the hash itself.
func (u User) Credential() string {
	sum := sha256.Sum256(append([]byte("ottu-recon console credential\x00"), u.hash...))
	return hex.EncodeToString(sum[:16])
}

// Users is the users file as read.
type Users struct {
	byName map[string]User
	order  []string
}

// MinPasswordLength is the shortest password console-user accepts.
const MinPasswordLength = 12

// bcryptCost is the work factor of new hashes (tests lower it).
var bcryptCost = 12

var validName = regexp.MustCompile(`^[A-Za-z0-9._@+-]{1,64}$`)

// ParseRole reads a role.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case Viewer, Operator:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want viewer or operator", s)
}

// ReadUsers parses a users file; a line that is not a valid user is an error
// naming the line (and never echoing its hash).
func ReadUsers(r io.Reader) (*Users, error) {
	u := &Users{byName: map[string]User{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("users file line %d: want NAME ROLE BCRYPT-HASH", n)
		}
		if !validName.MatchString(f[0]) {
			return nil, fmt.Errorf("users file line %d: name %q: letters, digits and ._@+- only, at most 64", n, f[0])
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("users file line %d: %w", n, err)
		}
		if _, err := bcrypt.Cost([]byte(f[2])); err != nil {
			return nil, fmt.Errorf("users file line %d: user %s: not a bcrypt hash", n, f[0])
		}
		if _, dup := u.byName[f[0]]; dup {
			return nil, fmt.Errorf("users file line %d: user %s listed twice", n, f[0])
		}
		u.byName[f[0]] = User{Name: f[0], Role: role, hash: []byte(f[2])}
		u.order = append(u.order, f[0])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	return u, nil
}

// LoadUsers reads the users file at path.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	return ReadUsers(f)
}

// Lookup returns the user called name.
func (u *Users) Lookup(name string) (User, bool) {
	user, ok := u.byName[name]
	return user, ok
}

// Len is how many users there are.
func (u *Users) Len() int { return len(u.order) }

// dummy is compared against when the name is unknown, so that an unknown
// name takes as long to refuse as a wrong password.
var dummy = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password of anyone's"), bcryptCost)
	return h
})

// Authenticate returns the user when name and password match.
func (u *Users) Authenticate(name, password string) (User, bool) {
	user, ok := u.byName[name]
	hash := user.hash
	if !ok {
		hash = dummy()
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		return User{}, false
	}
	return user, true
}

// Set adds the user, or gives an existing one this role and password.
func (u *Users) Set(name string, role Role, password string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("name %q: letters, digits and ._@+- only, at most 64", name)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	if len(password) < MinPasswordLength {
		return fmt.Errorf("password: at least %d characters", MinPasswordLength)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	if _, ok := u.byName[name]; !ok {
		u.order = append(u.order, name)
	}
	u.byName[name] = User{Name: name, Role: role, hash: hash}
	return nil
}

// WriteTo writes the users file.
func (u *Users) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	b.WriteString("# ottu-recon console users: NAME ROLE BCRYPT-HASH (reconcile console-user NAME ROLE)\n")
	for _, name := range u.order {
		user := u.byName[name]
		fmt.Fprintf(&b, "%s %s %s\n", user.Name, user.Role, user.hash)
	}
	return b.WriteTo(w)
}

// AddUser sets a user in the users file at path (created if missing),
// writing it again whole: a temporary file in the same directory, mode
// 0600, renamed over it. It holds a lock (path.lock) from reading the file
// to renaming the new one, so that commands run at once each keep their
// user.
func AddUser(path, name string, role Role, password string) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("users file lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("users file lock: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	users := &Users{byName: map[string]User{}}
	if f, err := os.Open(path); err == nil {
		users, err = ReadUsers(f)
		f.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("users file: %w", err)
	}
	if err := users.Set(name, role, password); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".console-users-*")
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("users file: %w", err)
	}
	if _, err := users.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("users file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("users file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	return nil
}

// ReadPassword reads a password from r: its first line, without the line
// ending (a terminal echoes it: pipe it in, or use `read -rs`).
func ReadPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("read password: nothing on stdin")
	}
	return line, nil
}
