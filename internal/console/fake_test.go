package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// memSessions keeps sessions in memory: the handlers' tests and the
// benchmark are about pages, not NATS.
type memSessions struct {
	mu sync.Mutex
	m  map[string]Session
}

func (s *memSessions) Put(_ context.Context, k string, v Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[k] = v
	return nil
}

func (s *memSessions) Get(_ context.Context, k string) (Session, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return v, ok, nil
}

func (s *memSessions) Delete(_ context.Context, k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	return nil
}

// fakeStore is the console's Store in memory, read as the ClickHouse
// adapter reads its tables: every version a pass wrote (some not visible
// yet, as on a server that lags), every action, every rule.
type fakeStore struct {
	mu       sync.Mutex
	versions []casefile.Finding // every version written
	hidden   map[uint64]bool    // versions this "server" does not show yet
	actions  []casefile.Action
	rules    []ledger.MuteRule
	down     bool // ClickHouse does not answer
	clock    time.Time
}

var errDown = errors.New("clickhouse: connection refused")

func (s *fakeStore) write(fs ...casefile.Finding) (from, to uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fs {
		f.Version = uint64(len(s.versions) + 1)
		s.versions = append(s.versions, f)
		if from == 0 {
			from = f.Version
		}
		to = f.Version
	}
	return from, to
}

func (s *fakeStore) FindingStates(_ context.Context, from, to uint64) ([]casefile.Finding, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, 0, errDown
	}
	latest := map[ledger.Key]casefile.Finding{}
	var n uint64
	for _, f := range s.versions {
		if f.Version < from || (to > 0 && f.Version > to) || s.hidden[f.Version] {
			continue
		}
		n++
		if have, ok := latest[f.Key()]; !ok || f.Version > have.Version {
			f.Detail = ""
			latest[f.Key()] = f
		}
	}
	out := make([]casefile.Finding, 0, len(latest))
	for _, f := range latest {
		out = append(out, f)
	}
	return out, n, nil
}

func (s *fakeStore) Decisions(context.Context) (ledger.Decisions, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return ledger.Decisions{}, errDown
	}
	ds := ledger.Decisions{ByFinding: map[ledger.Key]ledger.Decision{}}
	for _, a := range s.actions {
		casefile.Take(&ds, a)
	}
	for _, m := range s.rules {
		casefile.TakeRule(&ds, m)
	}
	return ds, nil
}

func (s *fakeStore) FindingDetails(_ context.Context, keys []ledger.Key) (map[ledger.Key]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[ledger.Key]string{}
	for _, f := range s.versions {
		if slices.Contains(keys, f.Key()) {
			out[f.Key()] = f.Detail
		}
	}
	return out, nil
}

func (s *fakeStore) SessionsByKey(_ context.Context, key string) ([]string, error) {
	return []string{key}, nil
}

func (s *fakeStore) Story(context.Context, string) (*casefile.Story, error) {
	return nil, errors.New("not in the fake")
}

func (s *fakeStore) RawBody(context.Context, string, string) ([]byte, bool, error) {
	return nil, false, nil
}

func (s *fakeStore) AddActions(_ context.Context, as []casefile.Action) ([]casefile.Action, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return as, errDown
	}
	out := slices.Clone(as)
	for i := range out {
		found := false
		for _, f := range s.versions {
			if f.Key() == out[i].Key() {
				found = true
				if out[i].Evidence == "" {
					out[i].Evidence = f.Evidence
				}
			}
		}
		if !found {
			return as, casefile.ErrNoFinding
		}
		out[i].At, out[i].ID = s.clock, fmt.Sprintf("a%d", len(s.actions)+i)
	}
	s.actions = append(s.actions, out...)
	return out, nil
}

func (s *fakeStore) MuteRules(context.Context) ([]ledger.MuteRule, error) {
	ds, err := s.Decisions(context.Background())
	return ds.Rules, err
}

func (s *fakeStore) AddMuteRule(_ context.Context, m ledger.MuteRule) (ledger.MuteRule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.ID, m.At = fmt.Sprintf("r%d", len(s.rules)), s.clock
	s.rules = append(s.rules, m)
	return m, nil
}

func (s *fakeStore) EndMuteRule(ctx context.Context, id, actor, _ string) (ledger.MuteRule, error) {
	rules, _ := s.MuteRules(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range rules {
		if m.ID == id && m.End().After(s.clock) {
			m.EndedBy, m.EndedAt = actor, s.clock
			s.rules = append(s.rules, m)
			return m, nil
		}
	}
	return ledger.MuteRule{}, casefile.ErrNoRule
}

// rig is a console on a fakeStore, with an operator and a viewer signed in.
type rig struct {
	t        *testing.T
	store    *fakeStore
	c        *Console
	h        http.Handler
	sessions map[Role][2]string // cookie, form token
}

func newRig(t *testing.T) *rig {
	t.Helper()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	users := filepath.Join(t.TempDir(), "users")
	for name, role := range map[string]Role{"ada": Operator, "vic": Viewer} {
		if err := AddUser(users, name, role, "a-long-password-"+name); err != nil {
			t.Fatal(err)
		}
	}
	loaded, err := LoadUsers(users)
	if err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{hidden: map[uint64]bool{}, clock: now}
	sessions := &memSessions{m: map[string]Session{}}
	r := &rig{t: t, store: store, sessions: map[Role][2]string{}}
	for name, role := range map[string]Role{"ada": Operator, "vic": Viewer} {
		u, _ := loaded.Lookup(name)
		token, csrf := newToken(), newToken()
		_ = sessions.Put(context.Background(), sessionKey(token), Session{User: name, Role: role, CSRF: csrf, Expires: now.Add(time.Hour),
			Credential: u.Credential()})
		r.sessions[role] = [2]string{token, csrf}
	}
	r.c = &Console{Store: store, UsersFile: users, Sessions: sessions, Log: zerolog.Nop(), Now: func() time.Time { return now }}
	r.h = r.c.Handler()
	return r
}

// do sends a request as role; a form is posted with the session's token.
func (r *rig) do(role Role, method, path string, form url.Values) *httptest.ResponseRecorder {
	r.t.Helper()
	var req *http.Request
	if form != nil {
		form.Set("csrf", r.sessions[role][1])
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	req.AddCookie(&http.Cookie{Name: "recon_session", Value: r.sessions[role][0]})
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec
}

// memFeed keeps what the console publishes.
type memFeed struct {
	mu   sync.Mutex
	sent [][]byte
}

func (f *memFeed) Publish(data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, data)
	return nil
}

func (f *memFeed) Listen(func([]byte)) (func(), error) { return func() {}, nil }
