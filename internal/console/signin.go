package console

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Signing in and out: the sign-in page and form, the throttle's key (the
// client's address, behind trusted proxies the one they name), the session
// cookie.

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.session(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.renderSignin(w, r, http.StatusOK, "")
}

func (c *Console) renderSignin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	// One token per browser, kept while it is on the sign-in page: a page
	// the browser fetches beside it (its icon) must not replace the token
	// the form carries.
	token := ""
	if cookie, err := r.Cookie(c.signinCookie()); err == nil && len(cookie.Value) == 64 {
		token = cookie.Value
	} else {
		token = newToken()
	}
	http.SetCookie(w, &http.Cookie{Name: c.signinCookie(), Value: token, Path: "/", HttpOnly: true, Secure: c.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	c.render(w, r, status, "signin", map[string]any{"Title": "Sign in", "Token": token, "Problem": problem})
}

// clientIP is the address the request came from: behind a trusted proxy
// (TrustedProxies), the right-most address X-Forwarded-For names that is
// not itself a trusted proxy; X-Forwarded-For from anyone else is ignored.
func (c *Console) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !c.trusted(host) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		if !c.trusted(hop) {
			return hop
		}
		host = hop
	}
	return host
}

// trusted tells whether addr is one of TrustedProxies.
func (c *Console) trusted(addr string) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range c.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	name, password := r.PostFormValue("name"), r.PostFormValue("password")
	cookie, err := r.Cookie(c.signinCookie())
	if err != nil || !c.sameOrigin(r) || !validToken(r.PostFormValue("csrf"), cookie.Value) {
		c.renderSignin(w, r, http.StatusForbidden, "The sign-in form had expired or did not come from this page. Try again.")
		return
	}
	keys := []string{"name:" + strings.ToLower(name), "ip:" + c.clientIP(r)}
	// Counted before the password is checked: twenty guesses sent at once
	// are throttled like twenty in a row.
	if wait := c.Throttle.Attempt(keys...); wait > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		c.Log.Warn().Msg("console: sign-in throttled")
		c.renderSignin(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many failed sign-ins. Try again in %s.", wait.Round(time.Second)+time.Second))
		return
	}
	users, err := c.users.load(c.UsersFile)
	if err != nil {
		c.Log.Error().Err(err).Msg("console: read users file")
		c.renderSignin(w, r, http.StatusServiceUnavailable, "The console cannot read its users file; see the reconcile log.")
		return
	}
	u, ok := users.Authenticate(name, password)
	if !ok {
		c.Log.Info().Msg("console: sign-in refused") // the name may be a password typed in the wrong field: not logged
		c.renderSignin(w, r, http.StatusUnauthorized, "Wrong name or password.")
		return
	}
	c.Throttle.Succeed(keys[0])
	c.Throttle.Forgive(keys[1])
	token, now := newToken(), c.now()
	s := Session{User: u.Name, Role: u.Role, CSRF: newToken(), Created: now, Expires: now.Add(c.SessionTTL), Credential: u.Credential()}
	if err := c.Sessions.Put(r.Context(), sessionKey(token), s); err != nil {
		c.Log.Error().Err(err).Msg("console: store session")
		c.renderSignin(w, r, http.StatusServiceUnavailable, "The console cannot keep sessions right now (NATS); try again shortly.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: c.signinCookie(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookie(), Value: token, Path: "/", HttpOnly: true, Secure: c.Secure,
		SameSite: http.SameSiteStrictMode, Expires: s.Expires})
	c.Log.Info().Str("user", u.Name).Str("role", string(u.Role)).Msg("console: signed in")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request) {
	if cookie, err := r.Cookie(c.sessionCookie()); err == nil {
		if err := c.Sessions.Delete(r.Context(), sessionKey(cookie.Value)); err != nil {
			c.Log.Warn().Err(err).Msg("console: end session")
		}
	}
	http.SetCookie(w, &http.Cookie{Name: c.sessionCookie(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.Secure, SameSite: http.SameSiteStrictMode})
	c.Log.Info().Str("user", current(r).User).Msg("console: signed out")
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}
