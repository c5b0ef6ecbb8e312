package console

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Store is what the console reads and writes. The ClickHouse adapter
// (clickhouse.DB) implements it; the handlers' tests use a fake.
type Store interface {
	// FindingStates returns the latest version of each finding written in
	// versions from to to (to 0: from on), without its detail, and how many
	// distinct versions it read.
	FindingStates(ctx context.Context, from, to uint64) ([]casefile.Finding, uint64, error)
	// Decisions returns what people decided: by finding, and the mute rules.
	Decisions(ctx context.Context) (ledger.Decisions, error)
	// FindingDetails returns the latest detail of each of keys.
	FindingDetails(ctx context.Context, keys []ledger.Key) (map[ledger.Key]string, error)
	// SessionsByKey returns the parents a search names (a session_id, an
	// order_no or a reference_number).
	SessionsByKey(ctx context.Context, key string) ([]string, error)
	// Story reads everything stored about one parent.
	Story(ctx context.Context, sessionID string) (*casefile.Story, error)
	// RawBody returns a delivery's body as received; false if the parent
	// has no such delivery.
	RawBody(ctx context.Context, sessionID, deliveryID string) ([]byte, bool, error)
	// AddActions records actions on findings that exist, in one write
	// (casefile.ErrNoFinding if one does not), and returns them as stored.
	AddActions(ctx context.Context, as []casefile.Action) ([]casefile.Action, error)
	// MuteRules lists every mute rule, the latest made first.
	MuteRules(ctx context.Context) ([]ledger.MuteRule, error)
	// AddMuteRule records a rule, audited; EndMuteRule ends one early
	// (casefile.ErrNoRule if none such is in force).
	AddMuteRule(ctx context.Context, m ledger.MuteRule) (ledger.MuteRule, error)
	EndMuteRule(ctx context.Context, id, actor, note string) (ledger.MuteRule, error)
}

// Feed carries Changes between the replicas (a NATS subject: nats.Feed).
type Feed interface {
	Publish(data []byte) error
	Listen(fn func(data []byte)) (stop func(), err error)
}

// Change is what one replica tells every replica (itself included) it
// changed: the findings_log versions a pass wrote, from From to To; the
// actions people took; the mute rules made or ended. A replica reads the
// versions it is told of (again, until all are visible on its ClickHouse
// server), and takes the actions and rules in as they are, so that neither
// a merge in ClickHouse nor a replica's lag hides them; a full read every
// ResyncEvery is the safety net (docs/console.md, "Replicas").
type Change struct {
	From    uint64            `json:"from,omitempty"`
	To      uint64            `json:"to,omitempty"`
	Actions []casefile.Action `json:"actions,omitempty"`
	Rules   []ledger.MuteRule `json:"rules,omitempty"`
}

// Encode is the Change as it travels.
func (ch Change) Encode() []byte {
	b, _ := json.Marshal(ch) // plain data: it always encodes
	return b
}

// Changed takes in a change this replica made or heard of: the next page
// (or the next Refresh tick) reads what it names.
func (c *Console) Changed(ch Change) {
	sn := &c.snaps
	sn.inMu.Lock()
	now := c.now()
	if ch.To >= ch.From && ch.To > 0 {
		sn.ranges = append(sn.ranges, versionRange{From: ch.From, To: ch.To, Since: now})
	}
	for _, a := range ch.Actions {
		sn.recent = append(sn.recent, heard{action: a, at: now})
	}
	for _, m := range ch.Rules {
		sn.recent = append(sn.recent, heard{rule: &m, at: now})
	}
	sn.inMu.Unlock()
	sn.dirty.Store(true)
}

// tell publishes ch to every replica and takes it in here at once (this
// replica hears it again from the feed; taking it twice changes nothing).
// A selection's actions travel 500 to a message, well under NATS's
// max_payload (1 MB by default).
func (c *Console) tell(ch Change) {
	c.Changed(ch)
	if c.Feed == nil {
		return
	}
	for len(ch.Actions) > 500 {
		c.publish(Change{Actions: ch.Actions[:500]})
		ch.Actions = ch.Actions[500:]
	}
	c.publish(ch)
}

func (c *Console) publish(ch Change) {
	if err := c.Feed.Publish(ch.Encode()); err != nil {
		c.Log.Warn().Err(err).Msg("console: the other replicas were not told of a change; they see it at their next full read")
	}
}

// listen takes in what the feed carries until stop.
func (c *Console) listen() (stop func()) {
	if c.Feed == nil {
		return func() {}
	}
	stop, err := c.Feed.Listen(func(data []byte) {
		var ch Change
		if err := json.Unmarshal(data, &ch); err != nil {
			c.Log.Warn().Err(err).Msg("console: an unreadable change on the feed, ignored")
			return
		}
		c.Changed(ch)
	})
	if err != nil {
		c.Log.Warn().Err(err).Msg("console: not listening to the other replicas; changes show at the next full read")
		return func() {}
	}
	return stop
}

// versionRange is versions a pass wrote that this replica has not read
// whole yet.
type versionRange struct {
	From, To uint64
	Since    time.Time // when this replica heard of it
}

// heard is an action or a rule change this replica heard of, kept for
// two ResyncEvery so that a full read that does not see it yet (its
// ClickHouse server lags) does not hide it.
type heard struct {
	action casefile.Action
	rule   *ledger.MuteRule
	at     time.Time
}
