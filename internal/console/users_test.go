package console_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/ottu-recon/ottu-recon/internal/console"
)

func hash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), 4)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestReadUsers(t *testing.T) {
	h := hash(t, "correct horse battery")
	for _, tc := range []struct {
		name, file, err string
		users           int
	}{
		{"users, comments and blank lines", "# users\n\nada operator " + h + "\n  bob viewer " + h + "  \n", "", 2},
		{"empty", "", "", 0},
		{"a missing field", "ada operator\n", "line 1: want NAME ROLE BCRYPT-HASH", 0},
		{"an unknown role", "ada admin " + h + "\n", `line 1: role "admin"`, 0},
		{"a name with a space or a quote", "ad'a viewer " + h + "\n", "line 1: name", 0},
		{"not a bcrypt hash", "# x\nada viewer secret-in-clear\n", "line 2: user ada: not a bcrypt hash", 0},
		{"a user twice", "ada viewer " + h + "\nada operator " + h + "\n", "line 2: user ada listed twice", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := console.ReadUsers(strings.NewReader(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "secret-in-clear") || strings.Contains(err.Error(), h) {
					t.Fatalf("the error shows what the file holds: %v", err)
				}
				return
			}
			if err != nil || u.Len() != tc.users {
				t.Fatalf("%v users, %v", u, err)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	u, err := console.ReadUsers(strings.NewReader("ada operator " + hash(t, "correct horse battery") + "\nbob viewer " + hash(t, "another long one") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, password string
		ok             bool
		role           console.Role
	}{
		{"ada", "correct horse battery", true, console.Operator},
		{"bob", "another long one", true, console.Viewer},
		{"ada", "another long one", false, ""},
		{"ada", "correct horse battery ", false, ""},
		{"eve", "correct horse battery", false, ""},
		{"", "", false, ""},
	} {
		user, ok := u.Authenticate(tc.name, tc.password)
		if ok != tc.ok || user.Role != tc.role || (ok && user.Name != tc.name) {
			t.Errorf("%s / %q: %+v %v, want %v %s", tc.name, tc.password, user, ok, tc.ok, tc.role)
		}
	}
}

// TestAddUser: console-user creates the file (mode 0600), adds users, and
// gives an existing one a new role and password; the file reads back; a
// short password, a bad name or role changes nothing.
func TestAddUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := console.AddUser(path, "ada", console.Operator, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := console.AddUser(path, "bob", console.Viewer, "another long one"); err != nil {
		t.Fatal(err)
	}
	if err := console.AddUser(path, "ada", console.Viewer, "a new long password"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name     string
		role     console.Role
		password string
	}{{"eve", console.Viewer, "short"}, {"e ve", console.Viewer, "correct horse battery"}, {"eve", "admin", "correct horse battery"}} {
		if err := console.AddUser(path, bad.name, bad.role, bad.password); err == nil {
			t.Errorf("added %+v", bad)
		}
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	u, err := console.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 2 {
		t.Fatalf("%d users, want ada and bob", u.Len())
	}
	if user, ok := u.Authenticate("ada", "a new long password"); !ok || user.Role != console.Viewer {
		t.Errorf("ada after the change: %+v %v", user, ok)
	}
	if _, ok := u.Authenticate("ada", "correct horse battery"); ok {
		t.Error("ada's old password still works")
	}
	if _, ok := u.Authenticate("bob", "another long one"); !ok {
		t.Error("bob was lost")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if e.Name() != "users" && e.Name() != "users.lock" { // the lock stays, empty, for the next command
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestReadPassword(t *testing.T) {
	for in, want := range map[string]string{"pass word\n": "pass word", "no newline": "no newline", "crlf\r\nrest\n": "crlf", "\n": "", "": ""} {
		got, err := console.ReadPassword(strings.NewReader(in))
		if got != want || (want == "") != (err != nil) {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
}

// TestAddUser_Concurrent: six console-user commands at once keep six users;
// a new password changes the credential a session recorded.
func TestAddUser_Concurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			if err := console.AddUser(path, fmt.Sprintf("user%d", i), console.Viewer, "a-long-password-1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	users, err := console.LoadUsers(path)
	if err != nil || users.Len() != 6 {
		t.Fatalf("%d users after six at once (%v), want 6", users.Len(), err)
	}
	before, _ := users.Lookup("user0")
	if err := console.AddUser(path, "user0", console.Viewer, "another-password-2"); err != nil {
		t.Fatal(err)
	}
	users, _ = console.LoadUsers(path)
	after, _ := users.Lookup("user0")
	if before.Credential() == after.Credential() || len(after.Credential()) != 32 {
		t.Fatalf("credential %q before, %q after a new password", before.Credential(), after.Credential())
	}
}
