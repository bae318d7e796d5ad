package calllist

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/subscription"
)

// Lister assembles the call list at read time: the subscriptions in the
// renewal period from the Store's end-date index, their outcome State from
// the bucket the target keeps, and the contract manager's name and phone
// from the Store. Any number of API replicas can read at once.
type Lister struct {
	JS    jetstream.JetStream
	Store subscription.Store
	Rules Rules
	Now   func() time.Time
	// Bucket defaults to the package constant.
	Bucket string

	mu sync.Mutex
	kv jetstream.KeyValue
}

// parallelReads bounds the State reads in flight per list.
const parallelReads = 16

// bucket returns the State bucket, or nil while the target has not created
// it yet (then every State is empty). The Lister never creates it: a missing
// bucket is how the target knows to replay the stream.
func (l *Lister) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	kv, err := l.JS.KeyValue(ctx, cmp.Or(l.Bucket, Bucket))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open key-value bucket %s: %w", cmp.Or(l.Bucket, Bucket), err)
	}
	l.kv = kv
	return kv, nil
}

// List returns the call list as of asOf (today, in each subscription's
// zone, when zero), filtered by f, ranked.
func (l *Lister) List(ctx context.Context, asOf subscription.Date, f Filter) ([]Entry, error) {
	now := l.Now()
	day := asOf
	if day.IsZero() {
		day = subscription.Today(now, l.Rules.loc())
	}
	from, to := l.Rules.window(day)
	var subs []subscription.Subscription
	err := l.Store.EndingBetween(ctx, from, to, func(s subscription.Subscription) error {
		if s.Status == "" || s.Status == subscription.StatusActive {
			subs = append(subs, s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("call list: read subscriptions: %w", err)
	}
	kv, err := l.bucket(ctx)
	if err != nil {
		return nil, err
	}
	states := make([]*State, len(subs))
	if kv != nil {
		errs := make([]error, len(subs))
		sem := make(chan struct{}, parallelReads)
		var wg sync.WaitGroup
		for i, s := range subs {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				states[i], errs[i] = loadState(ctx, kv, s.ID)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("call list: %w", err)
		}
	}
	out := []Entry{}
	for i, s := range subs {
		e, ok := l.Rules.Build(s, states[i], l.Rules.today(s, now, asOf))
		if ok && f.Keep(e) {
			out = append(out, e)
		}
	}
	Sort(out)
	return out, nil
}

// Handler serves GET /api/v1/calllist: JSON by default, CSV with
// ?format=csv; filtered by reseller_rep, min_days and max_days; as_of
// (YYYY-MM-DD) reckons days left as of that day, like `run --as-of`.
type Handler struct {
	Lister *Lister
	Log    *zap.Logger
}

// ServeHTTP answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f Filter
	f.ResellerRep = q.Get("reseller_rep")
	for _, p := range []struct {
		name string
		dst  **int
	}{{"min_days", &f.MinDays}, {"max_days", &f.MaxDays}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%s %q: use a whole number of days, e.g. 30 (negative for lapsed)", p.name, v))
				return
			}
			*p.dst = &n
		}
	}
	var asOf subscription.Date
	if v := q.Get("as_of"); v != "" {
		d, err := subscription.ParseDate(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid", "as_of: "+err.Error())
			return
		}
		asOf = d
	}
	format := cmp.Or(q.Get("format"), "json")
	if format != "json" && format != "csv" {
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("format %q: use json or csv", format))
		return
	}
	entries, err := h.Lister.List(r.Context(), asOf, f)
	if err != nil {
		h.Log.Error("call list", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the call list cannot be read now: "+err.Error())
		return
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="calllist.csv"`)
		_ = WriteCSV(w, entries)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]any{"entries": entries, "count": len(entries)})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}

// CSVHeader is the header row of the CSV call list.
var CSVHeader = []string{
	"rank", "category", "reason", "subscription_id", "customer_account", "customer", "product",
	"end_date", "days_left", "seats", "seats_assigned", "seats_unused", "access_model",
	"contract_manager_name", "contract_manager_phone", "notices_sent", "last_outcome", "reseller_rep",
}

// WriteCSV writes entries as CSV that Excel opens cleanly: a UTF-8 byte
// order mark (so accented names survive), CRLF line ends, a header row.
// A text cell that a spreadsheet would run as a formula (one starting with
// =, +, -, @, tab or CR, as OWASP's CSV injection guidance lists) is
// prefixed with an apostrophe, so it shows as text and never runs; a plain
// phone number such as +44 1254 000101 is written as it is.
func WriteCSV(w interface{ Write([]byte) (int, error) }, entries []Entry) error {
	if _, err := w.Write([]byte("\uFEFF")); err != nil {
		return fmt.Errorf("write call list: %w", err)
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("write call list: %w", err)
	}
	num := func(p *int) string {
		if p == nil {
			return ""
		}
		return strconv.Itoa(*p)
	}
	for _, e := range entries {
		var sent []string
		for _, n := range e.NoticesSent {
			sent = append(sent, fmt.Sprintf("%d-day %s", n.Milestone, n.Date))
		}
		last := ""
		if e.LastOutcome != nil {
			last = fmt.Sprintf("%d-day %s", e.LastOutcome.Milestone, e.LastOutcome.Outcome)
		}
		row := []string{
			strconv.Itoa(e.Rank), string(e.Category), text(e.Reason), text(e.SubscriptionID), text(e.CustomerAcct),
			text(e.Customer), text(e.Product), e.EndDate.String(), strconv.Itoa(e.DaysLeft),
			num(e.Seats), num(e.SeatsAssigned), num(e.SeatsUnused), text(e.AccessModel),
			text(e.CMName), text(e.CMPhone), strings.Join(sent, "; "), last, text(e.ResellerRep),
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write call list: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write call list: %w", err)
	}
	return nil
}

// text defuses a cell a spreadsheet would evaluate, but for a plain phone
// number.
func text(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) && !plainPhone(s) {
		return "'" + s
	}
	return s
}

// plainPhone reports whether s is a phone number in international form: a
// leading + and then only digits, spaces, parentheses, dashes and dots,
// with at least 7 digits, e.g. +44 (0)1254 301-888. Such a cell holds no
// name a formula could call, and is too long a number to be one.
func plainPhone(s string) bool {
	if len(s) < 2 || s[0] != '+' {
		return false
	}
	digits := 0
	for _, c := range []byte(s[1:]) {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == ' ' || c == '(' || c == ')' || c == '-' || c == '.':
		default:
			return false
		}
	}
	return digits >= 7
}
