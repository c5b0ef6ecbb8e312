package alert

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// Source is the value of the source label on every alert ottu-recon posts.
const Source = "ottu-recon"

// Posted keeps, across restarts, the alerts posted as firing (by key), so
// that an alert whose finding ended is still ended after a restart, with the
// labels it fired with: a NATS key-value bucket (nats.Bucket) in production.
type Posted interface {
	Put(ctx context.Context, key string, value []byte) error
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Delete(ctx context.Context, key string) error
	Keys(ctx context.Context) ([]string, error)
}

// Alertmanager posts findings to Prometheus Alertmanager's v2 API
// (docs/alertmanager.md): every finding that fires, at every pass, with an
// endsAt Hold ahead, as Alertmanager expects of a client that keeps its
// alerts alive; and once more with endsAt now when it stops firing (it
// resolved, a person acknowledged or muted it), so that receivers get the
// resolved notification. An HA pair is posted to each; an alert counts as
// taken when one of them took it. Set the fields; safe for one pass at a
// time.
type Alertmanager struct {
	URLs        []string // base URLs, such as http://alertmanager:9093
	Username    string   // basic auth, with Password
	Password    string
	BearerToken string
	Client      *http.Client // its transport carries the TLS settings; a timeout is applied per request
	ConsoleURL  string       // RECON_CONSOLE_URL: each alert links to its finding
	Hold        time.Duration
	Posted      Posted // nil: kept in memory only
	Batch       int    // alerts per request; default 500

	mu     sync.Mutex
	loaded bool
	fired  map[string]posted // by key: what was posted as firing
	last   []models.PostableAlert
}

// posted is an alert as first posted: its labels never change while it
// fires, or Alertmanager would take it for another alert.
type posted struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"starts_at"`
}

var _ ledger.Pager = (*Alertmanager)(nil)

// Key names the alert of a finding in Posted.
func Key(sessionID string, code ledger.Code) string {
	sum := sha256.Sum256([]byte(sessionID + "\x00" + string(code)))
	return "alert." + hex.EncodeToString(sum[:16])
}

// Firing posts recs as firing, and ends what fired before and is not among
// them. What could not be posted is posted again at the next pass.
func (a *Alertmanager) Firing(ctx context.Context, recs []ledger.Record, now time.Time) (ledger.PageResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	if err := a.load(ctx); err != nil {
		errs = append(errs, err)
	}
	var res ledger.PageResult
	want := make(map[string]bool, len(recs))
	firing := make([]models.PostableAlert, 0, len(recs))
	for _, r := range recs {
		k := Key(r.SessionID, r.Code)
		want[k] = true
		p, ok := a.fired[k]
		if !ok {
			p = posted{Labels: a.labels(r), StartsAt: r.FirstSeen.UTC()}
		}
		p.Annotations = a.annotations(r) // the detail may say more now: annotations may change
		if !ok || !sameAnnotations(a.fired[k].Annotations, p.Annotations) {
			if err := a.remember(ctx, k, p); err != nil {
				errs = append(errs, err)
			}
		}
		firing = append(firing, p.alert(now.Add(a.Hold)))
	}
	taken, err := a.post(ctx, firing)
	if err != nil {
		errs = append(errs, err)
	}
	res.Firing = taken
	a.last = firing
	ended, endedKeys := a.ended(want, now)
	for i, ok := range a.postEach(ctx, ended, &errs) {
		if !ok {
			res.Owed++
			continue
		}
		res.Ended++
		delete(a.fired, endedKeys[i])
		if a.Posted != nil {
			if err := a.Posted.Delete(ctx, endedKeys[i]); err != nil {
				errs = append(errs, fmt.Errorf("forget an ended alert: %w", err))
			}
		}
	}
	return res, errors.Join(errs...)
}

// Repost posts again what the last pass posted as firing, with a new
// endsAt, and ends what is owed: for a pass that could not read its
// findings, so that an outage never reads as "everything resolved".
func (a *Alertmanager) Repost(ctx context.Context, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	if err := a.load(ctx); err != nil {
		errs = append(errs, err)
	}
	alerts := make([]models.PostableAlert, len(a.last))
	for i, al := range a.last {
		al.EndsAt = strfmt.DateTime(now.Add(a.Hold).UTC())
		alerts[i] = al
	}
	if len(alerts) == 0 { // restarted during the outage: what was posted, from Posted
		for _, p := range a.fired {
			alerts = append(alerts, p.alert(now.Add(a.Hold)))
		}
	}
	if _, err := a.post(ctx, alerts); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// load reads Posted once, after a start: the alerts an earlier process
// posted as firing.
func (a *Alertmanager) load(ctx context.Context) error {
	if a.fired == nil {
		a.fired = map[string]posted{}
	}
	if a.loaded || a.Posted == nil {
		a.loaded = true
		return nil
	}
	keys, err := a.Posted.Keys(ctx)
	if err != nil {
		return fmt.Errorf("read the alerts posted before: %w", err)
	}
	for _, k := range keys {
		b, ok, err := a.Posted.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("read the alerts posted before: %w", err)
		}
		var p posted
		if ok && json.Unmarshal(b, &p) == nil {
			a.fired[k] = p
		}
	}
	a.loaded = true
	return nil
}

func (a *Alertmanager) remember(ctx context.Context, k string, p posted) error {
	a.fired[k] = p
	if a.Posted == nil {
		return nil
	}
	b, _ := json.Marshal(p)
	if err := a.Posted.Put(ctx, k, b); err != nil {
		return fmt.Errorf("keep a posted alert: %w", err)
	}
	return nil
}

// ended lists what fired before and is not wanted now, ended at now.
func (a *Alertmanager) ended(want map[string]bool, now time.Time) ([]models.PostableAlert, []string) {
	var alerts []models.PostableAlert
	var keys []string
	for k, p := range a.fired {
		if !want[k] {
			alerts, keys = append(alerts, p.alert(now)), append(keys, k)
		}
	}
	return alerts, keys
}

func (a *Alertmanager) labels(r ledger.Record) map[string]string {
	l := map[string]string{"alertname": string(r.Code), "severity": string(r.Severity), "session_id": r.SessionID,
		"source": Source}
	if r.Stake.Gateway != "" {
		l["gateway"] = r.Stake.Gateway
	}
	if r.Stake.Currency != "" {
		l["currency"] = r.Stake.Currency
	}
	return l
}

func (a *Alertmanager) annotations(r ledger.Record) map[string]string {
	an := map[string]string{"summary": fmt.Sprintf("%s on payment %s", r.Code, r.SessionID), "description": r.Detail}
	if r.Stake.Amount.Valid {
		an["amount"] = strings.TrimSpace(r.Stake.Amount.Format(r.Stake.Currency) + " " + r.Stake.Currency)
	}
	if a.ConsoleURL != "" {
		an["console_url"] = FindingURL(a.ConsoleURL, r.SessionID, string(r.Code))
	}
	return an
}

func sameAnnotations(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (p posted) alert(endsAt time.Time) models.PostableAlert {
	return models.PostableAlert{Alert: models.Alert{Labels: models.LabelSet(p.Labels)},
		Annotations: models.LabelSet(p.Annotations), StartsAt: strfmt.DateTime(p.StartsAt),
		EndsAt: strfmt.DateTime(endsAt.UTC())}
}

// postEach posts alerts in batches and tells, per alert, whether one
// Alertmanager took it.
func (a *Alertmanager) postEach(ctx context.Context, alerts []models.PostableAlert, errs *[]error) []bool {
	out := make([]bool, len(alerts))
	n := cmp.Or(a.Batch, 500)
	for i := 0; i < len(alerts); i += n {
		batch := alerts[i:min(i+n, len(alerts))]
		if a.send(ctx, batch, errs) {
			for j := range batch {
				out[i+j] = true
			}
		}
	}
	return out
}

// post posts alerts in batches and returns how many one Alertmanager took.
func (a *Alertmanager) post(ctx context.Context, alerts []models.PostableAlert) (int, error) {
	var errs []error
	taken := 0
	for _, ok := range a.postEach(ctx, alerts, &errs) {
		if ok {
			taken++
		}
	}
	return taken, errors.Join(errs...)
}

// send posts one batch to every Alertmanager; true when one took it.
func (a *Alertmanager) send(ctx context.Context, batch []models.PostableAlert, errs *[]error) bool {
	body := models.PostableAlerts(make([]*models.PostableAlert, len(batch)))
	for i := range batch {
		body[i] = &batch[i]
	}
	if err := body.Validate(strfmt.Default); err != nil {
		*errs = append(*errs, fmt.Errorf("alerts not valid for Alertmanager: %w", err))
		return false
	}
	b, err := json.Marshal(body)
	if err != nil {
		*errs = append(*errs, err)
		return false
	}
	took := false
	for _, u := range a.URLs {
		if err := a.postTo(ctx, u, b); err != nil {
			*errs = append(*errs, err)
			continue
		}
		took = true
	}
	return took
}

func (a *Alertmanager) postTo(ctx context.Context, base string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/api/v2/alerts", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alertmanager %s: %w", redactURL(base), err)
	}
	req.Header.Set("Content-Type", "application/json")
	switch {
	case a.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+a.BearerToken)
	case a.Username != "":
		req.SetBasicAuth(a.Username, a.Password)
	}
	client := a.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("alertmanager %s: %w", redactURL(base), err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("alertmanager %s: %s", redactURL(base), resp.Status)
	}
	return nil
}

// redactURL drops credentials from a URL before it is shown.
func redactURL(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "(an ALERTMANAGER_URL)"
}
