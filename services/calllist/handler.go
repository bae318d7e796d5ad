package calllist

import (
	"cmp"
	"container/heap"
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

	"renewals/pkg/page"
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

// List returns the whole call list as of asOf (today, in each
// subscription's zone, when zero), filtered by f, ranked.
func (l *Lister) List(ctx context.Context, asOf subscription.Date, f Filter) ([]Entry, error) {
	p, err := l.Page(ctx, asOf, f, "", 0)
	return p.Entries, err
}

// Page is one page of the ranked call list.
type Page struct {
	// Entries are ranked; each Rank counts from the top of the whole list.
	Entries []Entry
	// Total is the number of entries on the whole list.
	Total int
	// Next is the cursor of the page after this one; empty on the last page.
	Next string
}

// Page returns the entries of the call list (as List) that rank after
// cursor (from the top when empty), at most limit of them (all when 0). The
// list is ranked, so every subscription in the window is read; but only
// the entries of the page are kept, in a bounded heap, and those with
// their strings copied out of the records they came from, so a page of
// limit rows holds limit entries whatever the size of the list. A cursor
// this Lister did not give returns an error wrapping page.ErrCursor.
func (l *Lister) Page(ctx context.Context, asOf subscription.Date, f Filter, cursor string, limit int) (Page, error) {
	var after *rankKey
	if cursor != "" {
		k, err := decodeRankKey(cursor)
		if err != nil {
			return Page{}, err
		}
		after = &k
	}
	var (
		before int // entries at or above the cursor
		kept   entryHeap
		rest   int // entries after the cursor that the limit left out
	)
	err := l.scan(ctx, asOf, f, func(e Entry) {
		k := keyOf(e)
		if after != nil && k.compare(*after) <= 0 {
			before++
			return
		}
		if limit == 0 {
			kept = append(kept, compact(e))
			return
		}
		if len(kept) < limit {
			heap.Push(&kept, compact(e))
			return
		}
		rest++
		if k.compare(keyOf(kept[0])) < 0 {
			kept[0] = compact(e)
			heap.Fix(&kept, 0)
		}
	})
	if err != nil {
		return Page{}, err
	}
	out := []Entry(kept)
	Sort(out)
	for i := range out {
		out[i].Rank = before + i + 1
	}
	p := Page{Entries: out, Total: before + len(out) + rest}
	if rest > 0 {
		p.Next = keyOf(out[len(out)-1]).encode()
	}
	return p, nil
}

// scan calls fn, from one goroutine at a time, for every entry of the list
// as of asOf that passes f, in no particular order. The subscriptions are
// streamed from the Store's end-date index and their State read up to
// parallelReads at a time; none is kept after fn returns.
func (l *Lister) scan(ctx context.Context, asOf subscription.Date, f Filter, fn func(Entry)) error {
	now := l.Now()
	day := asOf
	if day.IsZero() {
		day = subscription.Today(now, l.Rules.loc())
	}
	from, to := l.Rules.window(day)
	kv, err := l.bucket(ctx)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	add := func(s subscription.Subscription, st *State) {
		e, ok := l.Rules.Build(s, st, l.Rules.today(s, now, asOf))
		if ok && f.Keep(e) {
			mu.Lock()
			fn(e)
			mu.Unlock()
		}
	}
	active := func(s subscription.Subscription) bool {
		return s.Status == "" || s.Status == subscription.StatusActive
	}
	if kv == nil {
		err := l.Store.EndingBetween(ctx, from, to, func(s subscription.Subscription) error {
			if active(s) {
				add(s, nil)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("call list: read subscriptions: %w", err)
		}
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	subs := make(chan subscription.Subscription, parallelReads)
	var wg sync.WaitGroup
	for range parallelReads {
		wg.Go(func() {
			for s := range subs {
				st, err := loadState(ctx, kv, s.ID)
				if err != nil {
					cancel(err)
					continue
				}
				add(s, st)
			}
		})
	}
	err = l.Store.EndingBetween(ctx, from, to, func(s subscription.Subscription) error {
		if !active(s) {
			return nil
		}
		select {
		case subs <- s:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(subs)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = errors.Join(err, cause)
	}
	if err != nil {
		return fmt.Errorf("call list: %w", err)
	}
	return nil
}

// rankKey is where an entry stands on the list: Sort's order.
type rankKey struct {
	order, days int
	id          string
}

func keyOf(e Entry) rankKey { return rankKey{e.Category.order(), e.DaysLeft, e.SubscriptionID} }

func (a rankKey) compare(b rankKey) int {
	return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.days, b.days), strings.Compare(a.id, b.id))
}

func (a rankKey) encode() string {
	return page.Encode(strconv.Itoa(a.order), strconv.Itoa(a.days), a.id)
}

func decodeRankKey(c string) (rankKey, error) {
	f, err := page.Decode(c, 3)
	if err != nil {
		return rankKey{}, err
	}
	order, err1 := strconv.Atoi(f[0])
	days, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || subscription.ValidID(f[2]) != nil {
		return rankKey{}, fmt.Errorf("cursor %q: %w", c, page.ErrCursor)
	}
	return rankKey{order, days, f[2]}, nil
}

// entryHeap is a max-heap by rank: its top is the entry a better one
// pushes out of a full page.
type entryHeap []Entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return keyOf(h[i]).compare(keyOf(h[j])) > 0 }
func (h entryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *entryHeap) Push(x any)        { *h = append(*h, x.(Entry)) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// compact copies e's strings out of the record they were sliced from, so
// that keeping the entry does not keep the whole record (and its personal
// data) alive.
func compact(e Entry) Entry {
	for _, p := range []*string{&e.Reason, &e.SubscriptionID, &e.CustomerAcct, &e.Customer, &e.Product,
		&e.AccessModel, &e.CMName, &e.CMPhone, &e.ResellerRep} {
		*p = strings.Clone(*p)
	}
	if e.LastOutcome != nil {
		lo := *e.LastOutcome
		lo.Reason = strings.Clone(lo.Reason)
		e.LastOutcome = &lo
	}
	return e
}

// Handler serves GET /api/v1/calllist: JSON by default, CSV with
// ?format=csv; filtered by reseller_rep, min_days and max_days; as_of
// (YYYY-MM-DD) reckons days left as of that day, like `run --as-of`; limit
// and cursor page it (Lister.Page), with the next page's cursor in the
// JSON's next_cursor and in a Link header. The rows are encoded one at a
// time as they are written.
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
	limit, err := page.Limit(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	p, err := h.Lister.Page(r.Context(), asOf, f, q.Get("cursor"), limit)
	if errors.Is(err, page.ErrCursor) {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	if err != nil {
		h.Log.Error("call list", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the call list cannot be read now: "+err.Error())
		return
	}
	if p.Next != "" {
		page.Next(w, r, p.Next)
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="calllist.csv"`)
		if err := WriteCSV(w, p.Entries); err != nil {
			// The answer is under way: only a cut connection tells the
			// client that this CSV is not whole.
			panic(http.ErrAbortHandler)
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	head := []page.Member{{Name: "count", Value: len(p.Entries)}, {Name: "total", Value: p.Total}}
	if p.Next != "" {
		head = append(head, page.Member{Name: "next_cursor", Value: p.Next})
	}
	j := page.NewJSON(w)
	err = j.Open("entries", head...)
	for _, e := range p.Entries {
		if err != nil {
			break
		}
		err = j.Row(e)
	}
	if err == nil {
		err = j.Close()
	}
	if err != nil {
		panic(http.ErrAbortHandler)
	}
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
	"stage", "renew_by", "last_call", "callback_on", "next_term_seats",
	"seats_unused_30", "seats_unused_60", "seats_unused_90", "quote_number", "quote_expiry", "quote_status",
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
	for i, e := range entries {
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
			e.Stage, dateCell(e.RenewBy), "", "", num(e.NextTermSeats),
			"", "", "", "", "", "",
		}
		if c := e.LastCall; c != nil {
			row[20] = c.On.String() + " " + string(c.Outcome)
			if !c.CallbackOn.IsZero() {
				row[21] = c.CallbackOn.String()
			}
		}
		if u := e.Usage; u != nil {
			row[23], row[24], row[25] = strconv.Itoa(u.Unused30), strconv.Itoa(u.Unused60), strconv.Itoa(u.Unused90)
		}
		if q := e.Quote; q != nil {
			row[26], row[28] = text(q.Number), q.Status
			if !q.Expiry.IsZero() {
				row[27] = q.Expiry.String()
			}
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write call list: %w", err)
		}
		if i%256 == 255 {
			// Send what is ready, and stop early for a client that has gone.
			cw.Flush()
			if err := cw.Error(); err != nil {
				return fmt.Errorf("write call list: %w", err)
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write call list: %w", err)
	}
	return nil
}

func dateCell(d *subscription.Date) string {
	if d == nil {
		return ""
	}
	return d.String()
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
