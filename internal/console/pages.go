package console

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/ottu-recon/ottu-recon/internal/casefile"
	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ledger"
)

// PageSize is how many findings a page of the list shows.
const PageSize = 50

// chartDays is how many days the front page's daily picture covers.
const chartDays = 30

// ages are the age filter's choices: first seen at least this long ago.
var ages = []struct {
	Value string
	Label string
	D     time.Duration
}{
	{"1h", "older than an hour", time.Hour},
	{"24h", "older than a day", 24 * time.Hour},
	{"7d", "older than a week", 7 * 24 * time.Hour},
	{"30d", "older than 30 days", 30 * 24 * time.Hour},
}

var statuses = []struct{ Value, Label string }{
	{"open", "open (not acknowledged)"},
	{"acknowledged", "acknowledged"},
	{"resolved", "resolved"},
	{"all", "all"},
}

// filterOf reads the list's filter from the query; unknown values are
// ignored (the filter shows what was applied).
func filterOf(q url.Values) Filter {
	f := Filter{Status: "open"}
	for _, s := range statuses {
		if q.Get("status") == s.Value {
			f.Status = s.Value
		}
	}
	if c := q.Get("code"); knownCode(c) {
		f.Code = c
	}
	if s := q.Get("severity"); slices.Contains(severities, s) {
		f.Severity = s
	}
	for _, a := range ages {
		if q.Get("age") == a.Value {
			f.OlderThan = a.D
		}
	}
	f.Gateway = clip(q.Get("gateway"), 200)
	f.Currency = clip(q.Get("currency"), 16)
	f.Search = clip(strings.TrimSpace(q.Get("q")), 200)
	return f
}

func clip(s string, n int) string {
	if len(s) > n {
		return ""
	}
	return s
}

// query renders f (and page) as the list's query string.
func query(f Filter, page int) string {
	v := url.Values{}
	if f.Status != "open" {
		v.Set("status", f.Status)
	}
	for k, x := range map[string]string{"code": f.Code, "severity": f.Severity, "gateway": f.Gateway, "currency": f.Currency, "q": f.Search} {
		if x != "" {
			v.Set(k, x)
		}
	}
	for _, a := range ages {
		if f.OlderThan == a.D {
			v.Set("age", a.Value)
		}
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func (c *Console) findingsPage(w http.ResponseWriter, r *http.Request) {
	f := filterOf(r.URL.Query())
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	now := c.now().UTC()
	since := now.Truncate(24*time.Hour).AddDate(0, 0, -(chartDays - 1))
	snap, err := c.findings(r.Context())
	if err != nil {
		c.failErr(w, r, "read the findings", err)
		return
	}
	match, err := c.matcher(r.Context(), f, now)
	if err != nil {
		c.failErr(w, r, "search", err)
		return
	}

	t := tally(snap, match, since, (page-1)*PageSize)
	if err := c.withDetails(r.Context(), t.rows); err != nil {
		c.failErr(w, r, "read the findings' details", err)
		return
	}
	total, rows := t.total, t.rows
	pages := max(int((total+PageSize-1)/PageSize), 1)
	data := map[string]any{
		"Title":      "Findings",
		"Filter":     f,
		"Query":      query(f, 0),
		"Rows":       rows,
		"Counts":     t.cells,
		"SevTotals":  t.sevTotals,
		"Severities": severities,
		"Total":      total,
		"Page":       page,
		"Pages":      pages,
		"First":      (page-1)*PageSize + 1,
		"Last":       (page-1)*PageSize + len(rows),
		"Codes":      codes(),
		"Statuses":   statuses,
		"Ages":       ages,
		"Gateways":   snap.gateways,
		"Currencies": snap.choices,
		"Daily":      dailyChart(t.days),
		"Days":       t.days,
		"Stake":      stakeChart(t.stakes, decimalsOf),
		"Stakes":     t.stakes,
		"Now":        now,
		"Coverage":   c.coverage.Load(),
	}
	if page > 1 {
		data["Prev"] = query(f, page-1)
	}
	if page < pages {
		data["Next"] = query(f, page+1)
	}
	c.render(w, r, http.StatusOK, "findings", data)
}

// decimalsOf is how many decimals an amount in currency is shown with.
func decimalsOf(currency string) int32 { return events.CurrencyDecimals(currency) }

func knownCode(c string) bool {
	for _, x := range ledger.Codes {
		if string(x.Code) == c {
			return true
		}
	}
	return false
}

// codes lists the finding codes, for the filter.
func codes() []string {
	out := make([]string, len(ledger.Codes))
	for i, x := range ledger.Codes {
		out[i] = string(x.Code)
	}
	slices.Sort(out)
	return out
}

// validSession: Ottu session ids are short tokens; anything else is not
// looked up.
func validID(s string) bool {
	return s != "" && len(s) <= 200 && utf8.ValidString(s) && !strings.ContainsAny(s, "\x00\r\n")
}

func (c *Console) paymentPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("session")
	if !validID(id) {
		c.fail(w, r, http.StatusNotFound, "There is no such payment.")
		return
	}
	s, err := c.Store.Story(r.Context(), id)
	if err != nil {
		c.failErr(w, r, "read the payment", err)
		return
	}
	if len(s.Deliveries) == 0 && len(s.Findings) == 0 {
		c.fail(w, r, http.StatusNotFound, "Nothing is stored about this payment.")
		return
	}
	currency := ""
	for _, d := range s.Deliveries {
		currency = cmpOr(currency, d.Currency)
	}
	steps := ledger.Story(storyDeliveries(s.Deliveries))
	points := make([]AmountPoint, len(steps))
	for i, st := range steps {
		points[i] = AmountPoint{At: st.At, Paid: st.Collected, Captured: st.Captured, Refunded: st.Refunded, Voided: st.Voided}
	}
	var latest *ledger.StoryStep // the payment as the ledger folds it: the pass's truth
	if len(steps) > 0 && steps[len(steps)-1].State != "" {
		latest = &steps[len(steps)-1]
		currency = cmpOr(latest.Currency, currency) // the latest payment delivery's, as the ledger says
	}
	actionsBy := map[string][]casefile.Action{}
	for _, a := range s.Actions {
		actionsBy[a.Code] = append(actionsBy[a.Code], a)
	}
	versionsBy := map[string][]casefile.FindingVersion{}
	for _, v := range s.Versions {
		versionsBy[v.Code] = append(versionsBy[v.Code], v)
	}
	c.render(w, r, http.StatusOK, "payment", map[string]any{
		"Title":      "Payment " + id,
		"Story":      s,
		"Latest":     latest,
		"Currency":   currency,
		"Chart":      amountsChart(points, currency),
		"Points":     points,
		"ActionsBy":  actionsBy,
		"VersionsBy": versionsBy,
		"Tomorrow":   c.now().UTC().AddDate(0, 0, 1).Format("2006-01-02"),
		"Now":        c.now(),
	})
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// storyDeliveries are the story's payment and operation deliveries as the
// ledger folds them (ledger.Story), ranked as the store ranks them.
func storyDeliveries(ds []casefile.Delivery) []ledger.StoryDelivery {
	out := make([]ledger.StoryDelivery, 0, len(ds))
	for _, d := range ds {
		if d.Kind != "payment" && d.Kind != "operation" {
			continue
		}
		order := events.TxnStateOrder
		if d.Kind == "payment" {
			order = events.PaymentStateOrder
		}
		terminal, rank := order(d.State)
		out = append(out, ledger.StoryDelivery{Payment: d.Kind == "payment", ReferenceNumber: d.ReferenceNumber,
			Operation: d.Operation, State: d.State, Amount: storyAmount(d.Amount), TxnAmount: storyAmount(d.TxnAmount), Currency: d.Currency,
			Rank: ledger.NewRank(uint32(d.Timestamp.Unix()), uint32(d.ReceivedAt.Unix()), terminal, rank, d.Seq)})
	}
	return out
}

func storyAmount(d *decimal.Decimal) events.Amount {
	if d == nil {
		return events.Amount{}
	}
	return events.Amount{Decimal: *d, Valid: true}
}

func (c *Console) rawPage(w http.ResponseWriter, r *http.Request) {
	id, delivery, body, ok := c.delivery(w, r)
	if !ok {
		return
	}
	masked := current(r).Role != Operator
	c.Log.Info().Str("user", current(r).User).Bool("masked", masked).Msg("console: raw body shown")
	c.render(w, r, http.StatusOK, "raw", map[string]any{"Title": "Delivery " + delivery, "SessionID": id, "DeliveryID": delivery,
		"Body": prettyBody(body, masked), "Masked": masked})
}

// delivery reads the body of the delivery the request names, answering
// for it when there is none.
func (c *Console) delivery(w http.ResponseWriter, r *http.Request) (id, delivery string, body []byte, ok bool) {
	id, delivery = r.PathValue("session"), r.PathValue("delivery")
	if !validID(id) || !validID(delivery) {
		c.fail(w, r, http.StatusNotFound, "There is no such delivery.")
		return "", "", nil, false
	}
	body, found, err := c.Store.RawBody(r.Context(), id, delivery)
	if err != nil {
		c.failErr(w, r, "read the delivery", err)
		return "", "", nil, false
	}
	if !found {
		c.fail(w, r, http.StatusNotFound, "There is no such delivery of this payment.")
		return "", "", nil, false
	}
	return id, delivery, body, true
}

// bodyBytes answers the delivery's body exactly as it was received, as a
// download: for operators (a viewer sees it masked only).
func (c *Console) bodyBytes(w http.ResponseWriter, r *http.Request) {
	if current(r).Role != Operator {
		c.fail(w, r, http.StatusForbidden, "Only an operator may download a body whole.")
		return
	}
	_, _, body, ok := c.delivery(w, r)
	if !ok {
		return
	}
	c.Log.Info().Str("user", current(r).User).Msg("console: raw body downloaded")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="delivery.json"`)
	_, _ = w.Write(body)
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"stamp":  stamp,
	"stampp": stampp,
	"money": func(d decimal.Decimal, currency string) string {
		return d.StringFixed(decimalsOf(currency))
	},
	"moneyp": func(d *decimal.Decimal, currency string) string {
		if d == nil {
			return ""
		}
		return d.StringFixed(decimalsOf(currency))
	},
	"age": func(now, t time.Time) string {
		d := now.Sub(t)
		switch {
		case d < time.Hour:
			return fmt.Sprintf("%d min", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%d h", int(d.Hours()))
		}
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	},
	"path": url.PathEscape,
	// short is the start of a long id, for a list (the link and its label
	// carry it whole).
	"short": func(s string) string {
		if utf8.RuneCountInString(s) <= 14 {
			return s
		}
		return string([]rune(s)[:12]) + "…"
	},
	"inc": func(i int) int { return i + 1 },
	"sevIndex": func(s string) int {
		return slices.Index(severities, s)
	},
	"eq2":  func(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) },
	"pick": pickValue,
	// mutedNow: a mute (of the finding, or by a rule) still in force at now.
	"mutedNow": func(now time.Time, until *time.Time) bool { return until != nil && now.Before(*until) },
}
