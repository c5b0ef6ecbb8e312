// Package console is the findings console: HTML pages, served by `reconcile
// serve` on RECON_CONSOLE_LISTEN, where a signed-in person reads the
// findings, opens a payment's story, and acknowledges, resolves, mutes or
// notes a finding (docs/console.md). Pages are rendered on the server from
// embedded templates; there is no script.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ottu-recon/ottu-recon/internal/report"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Console serves the console. Set the fields, then use Handler.
type Console struct {
	Store     Store    // where findings are read and actions written (clickhouse.DB)
	Feed      Feed     // how the replicas tell each other what changed (nats.Feed); nil: the full reads only
	UsersFile string   // RECON_CONSOLE_USERS_FILE, read again when it changes
	Sessions  Sessions // where sessions live (KVSessions)
	// PublicURL is the console's public base URL (RECON_CONSOLE_URL): a form
	// posted from it is from the console's own page even when a proxy
	// rewrote Host.
	PublicURL string
	// TrustedProxies are the proxies in front of the console whose
	// X-Forwarded-For is believed (RECON_CONSOLE_TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// Secure marks cookies Secure (the console is served over TLS, or behind
	// a proxy that terminates it).
	Secure bool
	// SessionTTL is how long a session lasts (default 12 hours).
	SessionTTL time.Duration
	Log        zerolog.Logger
	Now        func() time.Time
	Throttle   *Throttle
	// CoverageWindow is how far back the findings page sums the coverage
	// view (RECON_ORDER_WATCH); 0 shows none.
	CoverageWindow time.Duration
	// Coverage reads the coverage view's days from since on (the store's).
	Coverage func(ctx context.Context, since time.Time) ([]report.Coverage, error)

	once     sync.Once
	coverage atomic.Pointer[coverage]
	pages    map[string]*template.Template
	users    usersCache
	snaps    snapshots
}

// sessionCookie names the session cookie; under TLS the __Host- prefix makes
// the browser refuse it unless Secure, for this host only, on path /.
func (c *Console) sessionCookie() string {
	if c.Secure {
		return "__Host-recon_session"
	}
	return "recon_session"
}

func (c *Console) signinCookie() string {
	if c.Secure {
		return "__Host-recon_signin"
	}
	return "recon_signin"
}

func (c *Console) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Console) init() {
	c.once.Do(func() {
		if c.Throttle == nil {
			c.Throttle = &Throttle{}
		}
		if c.SessionTTL <= 0 {
			c.SessionTTL = 12 * time.Hour
		}
		c.pages = map[string]*template.Template{}
		for _, page := range []string{"signin", "findings", "payment", "raw", "error", "select", "mutes"} {
			c.pages[page] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+page+".html"))
		}
	})
}

// Handler returns the console's routes, each behind the security headers,
// and each but the sign-in page and the stylesheet behind a session.
func (c *Console) Handler() http.Handler {
	c.init()
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /signin", c.signinPage)
	mux.HandleFunc("POST /signin", c.signin)
	mux.Handle("POST /signout", c.authed(c.signout, false))
	mux.Handle("GET /{$}", c.authed(c.findingsPage, false))
	mux.Handle("GET /findings.csv", c.authed(c.exportCSV, false))
	mux.Handle("GET /payments/{session}", c.authed(c.paymentPage, false))
	mux.Handle("GET /payments/{session}/deliveries/{delivery}", c.authed(c.rawPage, false))
	mux.Handle("GET /payments/{session}/deliveries/{delivery}/body", c.authed(c.bodyBytes, false))
	mux.Handle("POST /actions", c.authed(c.act, true))
	mux.Handle("GET /select", c.authed(c.selectPage, false))
	mux.Handle("POST /actions/selection", c.authed(c.actOnSelection, true))
	mux.Handle("GET /mutes", c.authed(c.mutesPage, false))
	mux.Handle("POST /mutes", c.authed(c.addMute, true))
	mux.Handle("POST /mutes/{id}/end", c.authed(c.endMute, true))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := c.session(r); !ok {
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
			return
		}
		c.fail(w, r, http.StatusNotFound, "There is no such page.")
	})
	return c.headers(c.logged(mux))
}

// headers sets what every answer carries: a Content-Security-Policy that
// allows no script at all, no framing, no referrer, no caching of pages
// that hold payment data.
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin") // a page's address (a payment's id) never goes to another site
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		if c.Secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logged logs each request by its route, never its path or query: they may
// name a payment or carry what a person searched for.
func (c *Console) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		ev := c.Log.Debug()
		if sw.status >= 500 {
			ev = c.Log.Warn()
		}
		ev.Str("method", r.Method).Str("route", r.Pattern).Int("status", sw.status).
			Dur("duration", time.Since(start)).Msg("console request")
	})
}

type ctxKey struct{}

// current returns the request's session (set by authed).
func current(r *http.Request) Session {
	s, _ := r.Context().Value(ctxKey{}).(Session)
	return s
}

// session returns the request's session, if its cookie names a live one of
// a user who still exists with the same role.
func (c *Console) session(r *http.Request) (Session, bool) {
	cookie, err := r.Cookie(c.sessionCookie())
	if err != nil || len(cookie.Value) != 64 {
		return Session{}, false
	}
	s, ok, err := c.Sessions.Get(r.Context(), sessionKey(cookie.Value))
	if err != nil {
		c.Log.Warn().Err(err).Msg("console: read session")
		return Session{}, false
	}
	if !ok || !c.now().Before(s.Expires) {
		return Session{}, false
	}
	users, err := c.users.load(c.UsersFile)
	if err != nil {
		c.Log.Error().Err(err).Msg("console: read users file")
		return Session{}, false
	}
	if u, ok := users.Lookup(s.User); !ok || u.Role != s.Role || !validToken(s.Credential, u.Credential()) {
		return Session{}, false // removed, given another role or a new password: sign in again
	}
	return s, true
}

// authed serves next only within a session; a state-changing request must
// also come from the console's own page (same origin, the session's form
// token) and, when operator is set, from an operator.
func (c *Console) authed(next http.HandlerFunc, operator bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.session(r)
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			c.fail(w, r, http.StatusForbidden, "Sign in first.")
			return
		}
		if r.Method == http.MethodPost {
			if !c.sameOrigin(r) || !validToken(r.PostFormValue("csrf"), s.CSRF) {
				c.Log.Warn().Str("user", s.User).Str("route", r.Pattern).Msg("console: refused a request that did not come from the console's own page")
				c.fail(w, r, http.StatusForbidden, "This request did not come from the console's own page, and was refused.")
				return
			}
			if operator && s.Role != Operator {
				c.fail(w, r, http.StatusForbidden, "Only an operator may act on findings.")
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
	})
}

// sameOrigin refuses what a browser says came from elsewhere: the
// Sec-Fetch-Site and Origin headers, when sent, must name this origin (the
// request's host, or the console's public URL's). An opaque origin ("null":
// a sandboxed frame, a redirect across sites, some privacy settings) passes
// only when Sec-Fetch-Site says same-origin.
func (c *Console) sameOrigin(r *http.Request) bool {
	site := r.Header.Get("Sec-Fetch-Site")
	if site != "" && site != "same-origin" && site != "none" {
		return false
	}
	switch origin := r.Header.Get("Origin"); origin {
	case "":
	case "null":
		return site == "same-origin"
	default:
		u, err := url.Parse(origin)
		if err != nil {
			return false
		}
		public, perr := url.Parse(c.PublicURL)
		if u.Host != r.Host && (c.PublicURL == "" || perr != nil || u.Host != public.Host || u.Scheme != public.Scheme) {
			return false
		}
	}
	return true
}

func validToken(got, want string) bool {
	return want != "" && len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// render writes page with data, within the layout.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, data map[string]any) {
	if s, ok := r.Context().Value(ctxKey{}).(Session); ok {
		data["Session"] = s
		data["Operator"] = s.Role == Operator
	}
	var b strings.Builder
	if err := c.pages[page].Execute(&b, data); err != nil {
		c.Log.Error().Err(err).Str("page", page).Msg("console: render")
		http.Error(w, "The page could not be rendered; see the reconcile log.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail answers a page saying what went wrong.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	c.render(w, r, status, "error", map[string]any{"Title": http.StatusText(status), "Message": msg})
}

// failErr answers 503 for an error of the store, logging it (the page
// says only that the store failed).
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	c.Log.Error().Err(err).Str("route", r.Pattern).Msg("console: " + what)
	c.fail(w, r, http.StatusServiceUnavailable, "ClickHouse did not answer ("+what+"); try again shortly. The reconcile log has the reason.")
}

// usersCache reads the users file again when it changes.
type usersCache struct {
	mu    sync.Mutex
	mod   time.Time
	size  int64
	users *Users
}

func (u *usersCache) load(path string) (*Users, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.users != nil && st.ModTime().Equal(u.mod) && st.Size() == u.size {
		return u.users, nil
	}
	users, err := LoadUsers(path)
	if err != nil {
		return nil, err
	}
	u.users, u.mod, u.size = users, st.ModTime(), st.Size()
	return users, nil
}
