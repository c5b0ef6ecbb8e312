// Package casefile holds what the findings console reads and writes about a
// payment and its findings: a finding as the findings view shows it, a
// payment's story (its deliveries, its merchant order, Ottu's answers, every
// version of its findings) and the actions people took. The ClickHouse
// adapter fills them; the console renders them. What people's decisions mean
// is the ledger's (ledger.Decision).
package casefile

import (
	"errors"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Finding is a finding as the findings view shows it: its latest version,
// with what people decided (Apply).
type Finding struct {
	SessionID      string
	Code           string
	Severity       string
	Status         string // open or resolved, as the view says
	FirstSeen      time.Time
	LastSeen       time.Time
	ResolvedAt     *time.Time
	Detail         string // "" from FindingStates: FindingDetails reads it
	Evidence       string
	Amount         decimal.Decimal
	Currency       string
	Gateway        string
	AcknowledgedBy string
	AcknowledgedAt *time.Time
	ResolvedBy     string
	MutedUntil     *time.Time
	Confirmation   string
	Version        uint64 // of findings_log: the finding's latest
}

// Key names the finding in the ledger's terms.
func (f *Finding) Key() ledger.Key {
	return ledger.Key{SessionID: f.SessionID, Code: ledger.Code(f.Code)}
}

// Apply shows f, as a pass left it, with people's decision d applied: what
// the findings view shows (ledger.Decision.Show).
func (f *Finding) Apply(d ledger.Decision) {
	var resolvedAt time.Time
	if f.ResolvedAt != nil {
		resolvedAt = *f.ResolvedAt
	}
	s := d.Show(f.Status, resolvedAt, f.Evidence)
	f.Status, f.ResolvedBy, f.AcknowledgedBy = s.Status, s.ResolvedBy, s.AcknowledgedBy
	f.ResolvedAt, f.AcknowledgedAt, f.MutedUntil = timep(s.ResolvedAt), timep(s.AcknowledgedAt), timep(s.MutedUntil)
}

func timep(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Delivery is one delivery of a payment's story: a payment or operation
// webhook, or one that could not be read.
type Delivery struct {
	Kind            string // payment, operation or unreadable
	DeliveryID      string
	ReceivedAt      time.Time
	StoredAt        time.Time
	Timestamp       time.Time // timestamp_utc
	ReferenceNumber string
	Operation       string
	State           string // the payment's state, or the operation's txn.state
	Amount          *decimal.Decimal
	TxnAmount       *decimal.Decimal
	Currency        string
	Source          string // the operation's source (ottu or pg)
	Via             string // how it came: webhook, or Ottu's status query
	Scheme          string // signature scheme
	KeyIndex        uint8
	Seq             uint64
	Problem         string // why an unreadable delivery could not be read
}

// Story is everything the store holds about one parent payment.
type Story struct {
	SessionID  string
	OrderNo    string
	Deliveries []Delivery // by arrival
	Order      *MerchantOrder
	Inquiries  []OttuAnswer
	Versions   []FindingVersion // every version of every finding, oldest first
	Findings   []Finding        // as the findings view shows them now
	Actions    []Action         // oldest first
}

// MerchantOrder is the merchant's order of the payment (merchant_orders).
type MerchantOrder struct {
	Amount    decimal.Decimal
	Currency  string
	UpdatedAt time.Time
}

// OttuAnswer is one of Ottu's answers to a status query about the payment.
type OttuAnswer struct {
	AskedAt  time.Time
	Status   uint16
	Verdict  string
	State    string
	Amount   string
	Currency string
	Error    string
}

// FindingVersion is one version of a finding, as a pass wrote it.
type FindingVersion struct {
	Code      string
	Severity  string
	Status    string
	LastSeen  time.Time
	Detail    string
	Evidence  string
	RunID     string
	AlertedAt *time.Time
}

// Action is what a person did about a finding (finding_actions).
type Action struct {
	SessionID string
	Code      string
	Action    string // acknowledge, resolve, mute or note
	Actor     string
	At        time.Time
	Note      string
	Until     *time.Time
	Evidence  string
	ID        string
	RuleID    string // the mute rule a mute_rule or end_mute_rule action is about
}

// Action kinds (finding_actions.action).
const (
	ActionAcknowledge = "acknowledge"
	ActionResolve     = "resolve"
	ActionMute        = "mute"
	ActionNote        = "note"
	// A mute rule made, and one ended early (RuleID names it).
	ActionMuteRule    = "mute_rule"
	ActionEndMuteRule = "end_mute_rule"
)

// ErrNoFinding is returned by the store for a finding that does not exist.
var ErrNoFinding = errors.New("no such finding")

// ErrNoRule is returned by the store for a mute rule that does not exist or
// has ended.
var ErrNoRule = errors.New("no such mute rule in force")

// Key names the finding the action is about.
func (a Action) Key() ledger.Key {
	return ledger.Key{SessionID: a.SessionID, Code: ledger.Code(a.Code)}
}

// Take applies a to ds as the store reads finding_actions: the latest
// acknowledgement, resolution and mute of each finding, by their time. A
// note, or an action on a rule, changes no decision.
func Take(ds *ledger.Decisions, a Action) {
	k := a.Key()
	d := ds.ByFinding[k]
	switch {
	case a.Action == ActionAcknowledge && !a.At.Before(d.AckAt):
		d.AckBy, d.AckAt, d.AckEvidence = a.Actor, a.At, a.Evidence
	case a.Action == ActionResolve && !a.At.Before(d.ResolveAt):
		d.ResolveBy, d.ResolveAt, d.ResolveEvidence = a.Actor, a.At, a.Evidence
	case a.Action == ActionMute && a.Until != nil && !a.At.Before(d.MutedAt):
		d.MutedUntil, d.MutedAt = *a.Until, a.At
	default:
		return
	}
	if ds.ByFinding == nil {
		ds.ByFinding = map[ledger.Key]ledger.Decision{}
	}
	ds.ByFinding[k] = d
}

// TakeRule puts m in ds.Rules: a rule made, or one ended (its first end
// holds, as the store reads it).
func TakeRule(ds *ledger.Decisions, m ledger.MuteRule) {
	for i, have := range ds.Rules {
		if have.ID != m.ID {
			continue
		}
		if m.EndedBy != "" && (have.EndedBy == "" || m.EndedAt.Before(have.EndedAt)) {
			ds.Rules[i].EndedBy, ds.Rules[i].EndedAt = m.EndedBy, m.EndedAt
		}
		return
	}
	ds.Rules = append([]ledger.MuteRule{m}, ds.Rules...) // the latest made first
}
