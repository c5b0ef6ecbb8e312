package ledger

import (
	"time"
)

// Decision is what people decided about one finding in the console
// (finding_actions): the latest acknowledgement and the latest resolution by
// hand, each with the finding's evidence the person saw, and the latest
// mute (of the finding itself, or of a rule matching it: Decisions.Of).
//
// It is the one reading of people's decisions. The pass asks Quiet,
// ResolvedByHand and Settled; the console shows what Show says; the findings
// view's SQL says the same, pinned by TestDecisionSQL. An acknowledgement or
// a resolution holds while the finding's evidence is the one recorded with
// it, an empty evidence (a finding written before evidence was kept)
// included; a mute holds until its time.
type Decision struct {
	AckBy, ResolveBy             string // "" when nobody did
	AckAt, ResolveAt             time.Time
	AckEvidence, ResolveEvidence string
	MutedUntil                   time.Time // zero if never muted
	MutedAt                      time.Time // when the finding's own latest mute was made
}

// Acknowledged tells whether a person acknowledged the finding as it stands
// with evidence.
func (d Decision) Acknowledged(evidence string) bool {
	return d.AckBy != "" && d.AckEvidence == evidence
}

// ResolvedByHand tells whether a person resolved the finding and its
// evidence is still what they saw: it stays resolved.
func (d Decision) ResolvedByHand(evidence string) bool {
	return d.ResolveBy != "" && d.ResolveEvidence == evidence
}

// Muted tells whether the finding is muted at t.
func (d Decision) Muted(t time.Time) bool { return t.Before(d.MutedUntil) }

// Quiet tells whether a finding with evidence must not be alerted (nor
// announced) at t: it is muted, or a person acknowledged or resolved it
// while its evidence was what it still is.
func (d Decision) Quiet(evidence string, t time.Time) bool {
	return d.Muted(t) || d.Acknowledged(evidence) || d.ResolvedByHand(evidence)
}

// Settled tells whether a person acknowledged or resolved the finding as it
// stood with evidence: when new evidence arrives and the rule still fires,
// the finding is theirs to look at again, and it is alerted again.
func (d Decision) Settled(evidence string) bool {
	return d.Acknowledged(evidence) || d.ResolvedByHand(evidence)
}

// Shown is a finding as the findings view shows it, people's decisions
// applied to it as a pass left it.
type Shown struct {
	Status         string    // resolved by a pass, or by hand while the evidence holds
	ResolvedAt     time.Time // zero while open
	ResolvedBy     string    // "" unless resolved by hand
	AcknowledgedBy string    // "" unless open and acknowledged with its evidence
	AcknowledgedAt time.Time
	MutedUntil     time.Time
}

// Show applies d to a finding a pass left with status, resolvedAt and
// evidence. A pass that resolved it keeps its own time; one a person
// resolved while the pass had it open is resolved at their time.
func (d Decision) Show(status string, resolvedAt time.Time, evidence string) Shown {
	s := Shown{Status: status, ResolvedAt: resolvedAt, MutedUntil: d.MutedUntil}
	if d.ResolvedByHand(evidence) {
		if status == StatusOpen {
			s.ResolvedAt = d.ResolveAt
		}
		s.Status, s.ResolvedBy = StatusResolved, d.ResolveBy
	}
	if s.Status == StatusOpen && d.Acknowledged(evidence) {
		s.AcknowledgedBy, s.AcknowledgedAt = d.AckBy, d.AckAt
	}
	return s
}

// MuteRule mutes, like an Alertmanager silence, every finding it matches,
// now or later, until a time (mute_rules): its code, gateway and currency,
// each empty to match any. A rule ended early lasts until it was ended.
type MuteRule struct {
	ID                      string
	Code, Gateway, Currency string
	Until                   time.Time
	Actor                   string
	At                      time.Time
	Note                    string
	EndedBy                 string // "" unless ended early
	EndedAt                 time.Time
}

// Matches tells whether the rule covers a finding of code, on gateway, in
// currency.
func (m MuteRule) Matches(code, gateway, currency string) bool {
	return (m.Code == "" || m.Code == code) && (m.Gateway == "" || m.Gateway == gateway) &&
		(m.Currency == "" || m.Currency == currency)
}

// End is when the rule stops muting: its until, or when it was ended early.
func (m MuteRule) End() time.Time {
	if m.EndedBy != "" && m.EndedAt.Before(m.Until) {
		return m.EndedAt
	}
	return m.Until
}

// Decisions is everything people decided: by finding, and the mute rules.
type Decisions struct {
	ByFinding map[Key]Decision
	Rules     []MuteRule
}

// Of is the decision about the finding k, on gateway, in currency: its own,
// muted until the latest of its own mute and the ends of the rules matching
// it.
func (ds Decisions) Of(k Key, gateway, currency string) Decision {
	d := ds.ByFinding[k]
	for _, m := range ds.Rules {
		if end := m.End(); m.Matches(string(k.Code), gateway, currency) && end.After(d.MutedUntil) {
			d.MutedUntil = end
		}
	}
	return d
}
