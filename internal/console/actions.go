package console

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// MaxSelection is the most findings one action on a selection takes: a
// filter selecting more is narrowed first (the form carries each one).
const MaxSelection = 10000

// decisionOf reads what an operator decided in a form (action, note, until)
// into a, checked; problem says what is wrong with it.
func (c *Console) decisionOf(r *http.Request, a *casefile.Action) (problem string) {
	a.Action, a.Note = r.PostFormValue("action"), strings.TrimSpace(r.PostFormValue("note"))
	if len(a.Note) > 4000 {
		return "A note is at most 4000 characters."
	}
	switch a.Action {
	case casefile.ActionAcknowledge:
	case casefile.ActionResolve, casefile.ActionNote:
		if a.Note == "" {
			return "Say why, in the note: it is what an auditor reads."
		}
	case casefile.ActionMute:
		until, problem := c.untilOf(r)
		if problem != "" {
			return problem
		}
		a.Until = &until
	default:
		return "Unknown action."
	}
	return ""
}

// untilOf reads a mute's end: the end of the form's date (UTC), from today
// to a year ahead.
func (c *Console) untilOf(r *http.Request) (time.Time, string) {
	until, err := time.Parse("2006-01-02", r.PostFormValue("until"))
	if err != nil {
		return until, "Mute until a date (YYYY-MM-DD)."
	}
	until = until.Add(24 * time.Hour) // to the end of that day, UTC
	if !until.After(c.now()) || until.After(c.now().AddDate(1, 0, 0)) {
		return until, "Mute until a date from today to a year ahead."
	}
	return until, ""
}

// record stores actions in one write, tells every replica, and logs each
// (the audit is finding_actions; the log says who did what, by id).
func (c *Console) record(r *http.Request, as []casefile.Action) ([]casefile.Action, error) {
	as, err := c.Store.AddActions(r.Context(), as)
	if err != nil {
		return as, err
	}
	c.tell(Change{Actions: as})
	s := current(r)
	for _, a := range as {
		c.Log.Info().Str("user", s.User).Str("action", a.Action).Str("code", a.Code).Str("action_id", a.ID).Msg("console: action recorded")
	}
	return as, nil
}

// act records an operator's action on a finding and goes back to its payment.
func (c *Console) act(w http.ResponseWriter, r *http.Request) {
	a := casefile.Action{SessionID: r.PostFormValue("session_id"), Code: r.PostFormValue("code"), Actor: current(r).User,
		Evidence: r.PostFormValue("evidence")}
	if !validID(a.SessionID) || !knownCode(a.Code) || len(a.Evidence) > 64 {
		c.fail(w, r, http.StatusBadRequest, "No such finding.")
		return
	}
	if problem := c.decisionOf(r, &a); problem != "" {
		c.fail(w, r, http.StatusBadRequest, problem)
		return
	}
	if _, err := c.record(r, []casefile.Action{a}); errors.Is(err, casefile.ErrNoFinding) {
		c.fail(w, r, http.StatusBadRequest, "No such finding.")
		return
	} else if err != nil {
		c.failErr(w, r, "record the action", err)
		return
	}
	http.Redirect(w, r, "/payments/"+url.PathEscape(a.SessionID)+"#"+a.Code, http.StatusSeeOther)
}

// selectPage shows how many findings the filter selects now, lists them,
// and offers to acknowledge, resolve or mute exactly those: the form
// carries each one (and the evidence it has now), so the action takes what
// the person saw, not what the filter selects when they press the button.
func (c *Console) selectPage(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r.URL.Query())
	snap, err := c.findings(r.Context())
	if err != nil {
		c.failErr(w, r, "read the findings", err)
		return
	}
	match, err := c.matcher(r.Context(), f, c.now())
	if err != nil {
		c.failErr(w, r, "search", err)
		return
	}
	var picked []*casefile.Finding
	total := 0
	for _, x := range snap.rows {
		if match(x, true) {
			total++
			if len(picked) < MaxSelection {
				picked = append(picked, x)
			}
		}
	}
	c.render(w, r, http.StatusOK, "select", map[string]any{"Title": "Act on a selection", "Filter": f, "Query": query(f, 0),
		"Picked": picked, "Total": total, "Over": total > MaxSelection, "Max": MaxSelection, "Shown": picked[:min(len(picked), PageSize)],
		"Tomorrow": c.now().UTC().AddDate(0, 0, 1).Format("2006-01-02")})
}

// actOnSelection records one action per finding the select page carried,
// in one write, each audited as its own row of finding_actions.
func (c *Console) actOnSelection(w http.ResponseWriter, r *http.Request) {
	var d casefile.Action // the form was read by authed (net/http caps it at 10 MB)
	if problem := c.decisionOf(r, &d); problem != "" || d.Action == casefile.ActionNote {
		c.fail(w, r, http.StatusBadRequest, cmpOr(problem, "Unknown action."))
		return
	}
	picked := r.PostForm["f"]
	if len(picked) == 0 || len(picked) > MaxSelection {
		c.fail(w, r, http.StatusBadRequest, "Nothing selected, or more than the console takes at once.")
		return
	}
	as := make([]casefile.Action, 0, len(picked))
	for _, p := range picked {
		code, rest, _ := strings.Cut(p, " ")
		evidence, session, _ := strings.Cut(rest, " ")
		if !validID(session) || !knownCode(code) || len(evidence) > 64 {
			c.fail(w, r, http.StatusBadRequest, "No such finding.")
			return
		}
		a := d
		a.SessionID, a.Code, a.Evidence, a.Actor = session, code, evidence, current(r).User
		as = append(as, a)
	}
	if _, err := c.record(r, as); errors.Is(err, casefile.ErrNoFinding) {
		c.fail(w, r, http.StatusBadRequest, "A finding of the selection does not exist; nothing was recorded.")
		return
	} else if err != nil {
		c.failErr(w, r, "record the actions", err)
		return
	}
	back := r.PostFormValue("back")
	if !strings.HasPrefix(back, "?") {
		back = ""
	}
	http.Redirect(w, r, "/"+back, http.StatusSeeOther)
}

// pickValue is how the select page's form carries a finding.
func pickValue(f *casefile.Finding) string { return f.Code + " " + f.Evidence + " " + f.SessionID }

// mutesPage lists the mute rules, in force first, and (for an operator)
// offers to make one or end one early.
func (c *Console) mutesPage(w http.ResponseWriter, r *http.Request) {
	rules, err := c.Store.MuteRules(r.Context())
	if err != nil {
		c.failErr(w, r, "read the mute rules", err)
		return
	}
	now := c.now()
	var active, ended []ledger.MuteRule
	for _, m := range rules {
		if m.End().After(now) {
			active = append(active, m)
		} else {
			ended = append(ended, m)
		}
	}
	snap, err := c.findings(r.Context())
	if err != nil {
		c.failErr(w, r, "read the findings", err)
		return
	}
	c.render(w, r, http.StatusOK, "mutes", map[string]any{"Title": "Mute rules", "Active": active, "Ended": ended, "Codes": codes(),
		"Gateways": snap.gateways, "Currencies": snap.choices, "Tomorrow": now.UTC().AddDate(0, 0, 1).Format("2006-01-02")})
}

// addMute makes a mute rule.
func (c *Console) addMute(w http.ResponseWriter, r *http.Request) {
	m := ledger.MuteRule{Code: r.PostFormValue("code"), Gateway: clip(strings.TrimSpace(r.PostFormValue("gateway")), 200),
		Currency: clip(strings.TrimSpace(r.PostFormValue("currency")), 16), Actor: current(r).User,
		Note: strings.TrimSpace(r.PostFormValue("note"))}
	until, problem := c.untilOf(r)
	switch {
	case m.Code != "" && !knownCode(m.Code):
		problem = "Unknown code."
	case m.Code == "" && m.Gateway == "" && m.Currency == "":
		problem = "A rule names a code, a gateway or a currency: one matching everything would silence every alert."
	case m.Note == "" || len(m.Note) > 4000:
		problem = "Say why, in the note (at most 4000 characters): it is what an auditor reads."
	}
	if problem != "" {
		c.fail(w, r, http.StatusBadRequest, problem)
		return
	}
	m.Until = until
	m, err := c.Store.AddMuteRule(r.Context(), m)
	if err != nil {
		c.failErr(w, r, "record the mute rule", err)
		return
	}
	c.ruleChanged(w, r, m, "made")
}

// ruleChanged tells every replica of a rule made or ended, logs it, and
// goes back to the rules.
func (c *Console) ruleChanged(w http.ResponseWriter, r *http.Request, m ledger.MuteRule, what string) {
	c.tell(Change{Rules: []ledger.MuteRule{m}})
	c.Log.Info().Str("user", current(r).User).Str("rule", m.ID).Msg("console: mute rule " + what)
	http.Redirect(w, r, "/mutes", http.StatusSeeOther)
}

// endMute ends a mute rule early.
func (c *Console) endMute(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !validID(id) {
		c.fail(w, r, http.StatusNotFound, "There is no such mute rule.")
		return
	}
	m, err := c.Store.EndMuteRule(r.Context(), id, current(r).User, clip(strings.TrimSpace(r.PostFormValue("note")), 4000))
	if errors.Is(err, casefile.ErrNoRule) {
		c.fail(w, r, http.StatusNotFound, "There is no such mute rule in force.")
		return
	}
	if err != nil {
		c.failErr(w, r, "end the mute rule", err)
		return
	}
	c.ruleChanged(w, r, m, "ended")
}
