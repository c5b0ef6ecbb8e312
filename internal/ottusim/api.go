package ottusim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ottu-recon/ottu-recon/internal/events"
	"github.com/ottu-recon/ottu-recon/internal/ottuapi"
)

// API is a simulated Ottu host: it answers the Payment Status Query
// (POST /b/pbl/v2/inquiry/, header "Authorization: Api-Key <key>", a
// session_id or an order_no) with the parent's Truth, signed with the webhook
// key (scheme A): by order_no, the order's latest transaction. It keeps
// Ottu's throttle (docs/ottu-webhooks.md §7.1) per transaction, whichever
// key the question named: no question within 10 minutes of its creation, at
// most 3 in all, 30 minutes apart (else 400, as Ottu answers a refused
// inquiry), and at most 30 a minute overall (else 429).
type API struct {
	Key     string
	HMACKey []byte
	Now     func() time.Time

	mu      sync.Mutex
	records map[string]Parent
	byOrder map[string]string // order_no -> its latest transaction's session_id
	asked   map[string][]time.Time
	minute  []time.Time
	stats   APIStats
}

// APIStats counts what the API answered.
type APIStats struct {
	Calls, Answered, NotFound, Throttled, RateLimited, Unauthorized int
}

// Add makes the API know parents.
func (a *API) Add(parents ...Parent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.records == nil {
		a.records, a.byOrder, a.asked = map[string]Parent{}, map[string]string{}, map[string][]time.Time{}
	}
	for _, p := range parents {
		a.records[p.SessionID] = p
		order, _ := p.Truth["order_no"].(string)
		if last, ok := a.records[a.byOrder[order]]; order != "" && (!ok || !p.Created.Before(last.Created)) {
			a.byOrder[order] = p.SessionID
		}
	}
}

// Stats returns the counts so far.
func (a *API) Stats() APIStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != ottuapi.InquiryPath || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	answer := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.Calls++
	if r.Header.Get("Authorization") != "Api-Key "+a.Key {
		a.stats.Unauthorized++
		answer(http.StatusUnauthorized, map[string]string{"detail": "Invalid API key."})
		return
	}
	var req struct {
		SessionID string `json:"session_id"`
		OrderNo   string `json:"order_no"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || (req.SessionID == "" && req.OrderNo == "") {
		answer(http.StatusBadRequest, map[string]any{"session_id": []string{"This field is required."}})
		return
	}
	now := a.now()
	kept := a.minute[:0]
	for _, t := range a.minute {
		if now.Sub(t) < time.Minute {
			kept = append(kept, t)
		}
	}
	a.minute = kept
	if len(a.minute) >= 30 {
		a.stats.RateLimited++
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Minute-now.Sub(a.minute[0]))/int(time.Second)+1))
		answer(http.StatusTooManyRequests, map[string]string{"detail": "Request was throttled."})
		return
	}
	a.minute = append(a.minute, now)
	session := req.SessionID
	if session == "" {
		session = a.byOrder[req.OrderNo]
	}
	p, ok := a.records[session]
	if !ok {
		a.stats.NotFound++
		answer(http.StatusNotFound, map[string]string{"detail": "Not found."})
		return
	}
	asked := a.asked[session]
	if now.Sub(p.Created) < 10*time.Minute || len(asked) >= 3 || (len(asked) > 0 && now.Sub(asked[len(asked)-1]) < 30*time.Minute) {
		a.stats.Throttled++
		answer(http.StatusBadRequest, map[string]string{"detail": "Inquiry throttled for this transaction.", "result": "failed"})
		return
	}
	a.asked[session] = append(asked, now)
	obj := clone(p.Truth)
	obj["signature"] = events.Sign(obj, events.SchemeA, a.HMACKey)
	a.stats.Answered++
	answer(http.StatusOK, obj)
}
