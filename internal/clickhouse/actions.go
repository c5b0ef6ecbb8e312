package clickhouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// What people do in the console: actions on findings (finding_actions) and
// mute rules (mute_rules, audited in finding_actions too).

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AddActions records what a person did about findings, each of which must
// exist (else nothing is recorded and the error is casefile.ErrNoFinding),
// in one insert. An action's Evidence is the finding's evidence the person
// saw; empty, it is the finding's evidence now. At is set to the server's
// clock when zero, and ID to a new id. The insert is retried with the same
// ids, so each action is kept once.
func (db *DB) AddActions(ctx context.Context, as []casefile.Action) ([]casefile.Action, error) {
	if len(as) == 0 {
		return as, nil
	}
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	sessions := make([]string, len(as))
	for i, a := range as {
		sessions[i] = a.SessionID
	}
	ctx, in, err := (&Store{DB: db}).inList(ctx, "session_id", sessions)
	if err != nil {
		return as, err
	}
	evidence := map[ledger.Key]string{}
	err = db.each(ctx, "the findings acted on", "SELECT session_id, code, argMax(evidence, version) FROM findings_log WHERE "+in+
		" GROUP BY session_id, code", nil, func(rows driver.Rows) error {
		var k ledger.Key
		var code, ev string
		if err := rows.Scan(&k.SessionID, &code, &ev); err != nil {
			return err
		}
		k.Code = ledger.Code(code)
		evidence[k] = ev
		return nil
	})
	if err != nil {
		return as, err
	}
	now, err := db.Now(ctx)
	if err != nil {
		return as, err
	}
	out := make([]casefile.Action, len(as))
	for i, a := range as {
		ev, ok := evidence[a.Key()]
		if !ok {
			return as, fmt.Errorf("%w: %s %s", casefile.ErrNoFinding, a.SessionID, a.Code)
		}
		if a.Evidence == "" {
			a.Evidence = ev // the finding as it stands now
		}
		if a.At.IsZero() {
			a.At = now
		}
		if a.ID == "" {
			a.ID = newID()
		}
		out[i] = a
	}
	return out, db.insertActions(ctx, out)
}

// insertActions inserts actions, retried with the same rows (one action
// each, however many attempts stored it).
func (db *DB) insertActions(ctx context.Context, as []casefile.Action) error {
	w := Writer{DB: db}
	var err error
	for range 3 {
		err = w.insert(ctx, "finding_actions", `INSERT INTO finding_actions (session_id, code, action, actor, at, note, until, evidence,
			action_id, rule_id)`, len(as), func(i int) []any {
			a := as[i]
			return []any{a.SessionID, a.Code, a.Action, a.Actor, a.At, a.Note, a.Until, a.Evidence, a.ID, a.RuleID}
		})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return err
}

// insertRule inserts a row of mute_rules, retried as insertActions is.
func (db *DB) insertRule(ctx context.Context, m ledger.MuteRule) error {
	w := Writer{DB: db}
	var ended *time.Time
	if m.EndedBy != "" {
		ended = &m.EndedAt
	}
	var err error
	for range 3 {
		err = w.insert(ctx, "mute_rules", `INSERT INTO mute_rules (id, code, gateway, currency_code, until, actor, at, note, ended_by, ended_at)`,
			1, func(int) []any {
				return []any{m.ID, m.Code, m.Gateway, m.Currency, m.Until, m.Actor, m.At, m.Note, m.EndedBy, ended}
			})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return err
}

// AddMuteRule records a mute rule (its ID and At set here), and audits it
// in finding_actions as a mute_rule action.
func (db *DB) AddMuteRule(ctx context.Context, m ledger.MuteRule) (ledger.MuteRule, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	now, err := db.Now(ctx)
	if err != nil {
		return m, err
	}
	m.ID, m.At = newID(), now
	if err := db.insertRule(ctx, m); err != nil {
		return m, err
	}
	return m, db.insertActions(ctx, []casefile.Action{{Code: m.Code, Action: casefile.ActionMuteRule, Actor: m.Actor, At: now, Note: m.Note,
		Until: &m.Until, ID: newID(), RuleID: m.ID}})
}

// EndMuteRule ends the rule id now, by actor with note, and audits it as an
// end_mute_rule action; casefile.ErrNoRule if there is no such rule, or it
// has already ended.
func (db *DB) EndMuteRule(ctx context.Context, id, actor, note string) (ledger.MuteRule, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	rules, err := db.muteRules(ctx)
	if err != nil {
		return ledger.MuteRule{}, err
	}
	now, err := db.Now(ctx)
	if err != nil {
		return ledger.MuteRule{}, err
	}
	for _, m := range rules {
		if m.ID != id || !m.End().After(now) {
			continue
		}
		m.EndedBy, m.EndedAt = actor, now
		if err := db.insertRule(ctx, m); err != nil {
			return m, err
		}
		return m, db.insertActions(ctx, []casefile.Action{{Code: m.Code, Action: casefile.ActionEndMuteRule, Actor: actor, At: now, Note: note,
			Until: &m.Until, ID: newID(), RuleID: m.ID}})
	}
	return ledger.MuteRule{}, casefile.ErrNoRule
}

// muteRules reads every mute rule, ended or not, the latest made first.
func (db *DB) muteRules(ctx context.Context) ([]ledger.MuteRule, error) {
	return collect(ctx, db, "mute_rules", `SELECT id, any(code), any(gateway), any(currency_code), toUInt32(any(until)), any(actor),
		toUInt32(any(at)) AS made_at, any(note), argMinIf(ended_by, toUInt32(assumeNotNull(ended_at)), ended_by != ''),
		minIf(toUInt32(assumeNotNull(ended_at)), ended_by != '')
		FROM mute_rules GROUP BY id ORDER BY made_at DESC, id`, nil, func(rows driver.Rows) (ledger.MuteRule, error) {
		var m ledger.MuteRule
		var until, at, ended uint32
		err := rows.Scan(&m.ID, &m.Code, &m.Gateway, &m.Currency, &until, &m.Actor, &at, &m.Note, &m.EndedBy, &ended)
		m.Until, m.At = unixTime(until), unixTime(at)
		if m.EndedBy != "" {
			m.EndedAt = unixTime(ended)
		}
		return m, err
	})
}

// MuteRules returns every mute rule, ended or not, the latest made first.
func (db *DB) MuteRules(ctx context.Context) ([]ledger.MuteRule, error) {
	ctx, cancel := db.timeout(ctx)
	defer cancel()
	return db.muteRules(ctx)
}
