package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"renewals/pkg/importer"
	"renewals/pkg/page"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/services/calllist"
	"renewals/services/scheduler"
)

func itoa(n int) string { return strconv.Itoa(n) }

// pageSize is the rows of one page of every list.
const pageSize = 50

// --- sign-in ---

type loginData struct {
	Message string
	Users   bool
}

func (d loginData) flash() (string, string) { return "", d.Message }

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if ss, _ := c.session(r); ss != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// One token per browser while it signs in: a second sign-in page (in
	// another tab) keeps the first one's form valid.
	token := newToken()
	if ck, err := r.Cookie(loginCookie); err == nil && len(ck.Value) == len(token) {
		token = ck.Value
	}
	setCookie(w, r, loginCookie, token, 3600)
	users, _ := ReadUsers(c.UsersFile)
	v := view{Title: "Sign in", Path: "/login", CSRF: token, Data: loginData{msg, len(users) > 0}}
	v.Error = msg
	var b strings.Builder
	if err := c.pages["login"].ExecuteTemplate(&b, "layout", v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.showLogin(w, r, http.StatusBadRequest, "The sign-in form could not be read: reload the page and try again.")
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostForm.Get("csrf"), ck.Value) {
		c.showLogin(w, r, http.StatusForbidden, "This sign-in form has expired: try again on this fresh one.")
		return
	}
	addr := clientAddr(r)
	if c.limits.blocked(addr) {
		w.Header().Set("Retry-After", "60")
		c.showLogin(w, r, http.StatusTooManyRequests, "Too many failed sign-ins: wait a minute, then try again.")
		return
	}
	var (
		user string
		role Role
	)
	token, name, password := strings.TrimSpace(r.PostForm.Get("token")), strings.TrimSpace(r.PostForm.Get("username")), r.PostForm.Get("password")
	switch {
	case token != "":
		if c.Token != "" && sameToken(token, c.Token) {
			user, role = "API token", Operator
		}
	case name != "" && password != "":
		got, ok, err := checkUser(c.UsersFile, name, password)
		if err != nil {
			c.Log.Error("console sign-in", zap.Error(err))
			c.showLogin(w, r, http.StatusInternalServerError, "The users file cannot be read: ask whoever runs renewals to check RENEWALS_USERS_FILE.")
			return
		}
		if ok {
			user, role = name, got
		}
	default:
		c.showLogin(w, r, http.StatusBadRequest, "Give the API token, or a user name and password.")
		return
	}
	if role == "" {
		c.limits.failed(addr)
		c.Log.Info("console sign-in refused")
		c.showLogin(w, r, http.StatusUnauthorized, "That token, or that name and password, is not right: try again.")
		return
	}
	id, _ := c.sessions.create(user, role, c.Now())
	setCookie(w, r, CookieName, id, int(SessionTTL/time.Second))
	setCookie(w, r, loginCookie, "", -1)
	c.Log.Info("console sign-in", zap.String("role", string(role)))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	if _, id := c.session(r); id != "" {
		c.sessions.end(id)
	}
	setCookie(w, r, CookieName, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// --- overview ---

type overviewData struct {
	Today     subscription.Date
	Pass      *passView
	Figures   []figure
	Forecast  forecastChart
	Attention []attention
	BoardAt   time.Time
	Recent    []recentOutcome
	Health    []Check
	Zone      string
	EventKind string
	FromSeq   uint64
}

type passView struct {
	At     time.Time
	Result scheduler.Result
}

type figure struct {
	Label string
	Value string
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := overviewData{Today: c.today(), Zone: c.loc().String(), EventKind: strings.Join(eventTypes, " ")}
	if c.LastPass != nil {
		if res, at, ok := c.LastPass(); ok {
			d.Pass = &passView{at, res}
		}
	}
	d.Figures = c.figures()
	b := c.currentBoard(ctx)
	d.Forecast, d.Attention, d.BoardAt = b.forecast, b.attention, b.at
	d.Recent = c.recent.list()
	if c.LastSeq != nil {
		if last, err := c.LastSeq(ctx); err == nil && last > 0 {
			d.FromSeq = max(last, feedBacklog) - feedBacklog + 1
		}
	}
	if c.Health != nil {
		d.Health = c.Health(ctx)
	}
	c.render(w, r, ss, http.StatusOK, "overview", "Overview", d)
}

// feedBacklog is how many of the latest events the live feed starts with.
const feedBacklog = 20

// eventTypes are the CloudEvents types the live feed listens for.
var eventTypes = []string{
	"renewals.notice.due.v1", "renewals.notice.sent.v1", "renewals.notice.skipped.v1",
	"renewals.notice.failed.v1", "renewals.notice.undeliverable.v1",
	"renewals.subscription.upserted.v1", "renewals.subscription.erased.v1", "renewals.calllist.updated.v1",
}

// feed is /api/v1/events for a signed-in person: the same CloudEvents.
func (c *Console) feed(w http.ResponseWriter, r *http.Request) {
	if ss, _ := c.session(r); ss == nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintln(w, "sign in at /login first")
		return
	}
	if c.Events == nil {
		http.Error(w, "this server has no event stream", http.StatusServiceUnavailable)
		return
	}
	c.Events.ServeHTTP(w, r)
}

// --- call list ---

type calllistData struct {
	Rep, MinDays, MaxDays, AsOf string
	Entries                     []calllist.Entry
	Total                       int
	Next, First, CSV            string
	Message                     string
	CanCall                     bool
}

func (d calllistData) flash() (string, string) { return "", d.Message }

func (c *Console) calllistQuery(r *http.Request) (calllist.Filter, subscription.Date, string) {
	q := r.URL.Query()
	f := calllist.Filter{ResellerRep: strings.TrimSpace(q.Get("rep"))}
	for _, p := range []struct {
		name string
		dst  **int
	}{{"min_days", &f.MinDays}, {"max_days", &f.MaxDays}} {
		if v := strings.TrimSpace(q.Get(p.name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return f, subscription.Date{}, fmt.Sprintf("%s %q is not a whole number of days: use e.g. 30, or -10 for lapsed ones.", strings.ReplaceAll(p.name, "_", " "), v)
			}
			*p.dst = &n
		}
	}
	var asOf subscription.Date
	if v := strings.TrimSpace(q.Get("as_of")); v != "" {
		d, err := subscription.ParseDate(v)
		if err != nil {
			return f, asOf, "As of: " + err.Error() + "."
		}
		asOf = d
	}
	return f, asOf, ""
}

func (c *Console) calllist(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	d := calllistData{Rep: q.Get("rep"), MinDays: q.Get("min_days"), MaxDays: q.Get("max_days"), AsOf: q.Get("as_of"), CanCall: ss.role == Operator && c.Calls != nil}
	f, asOf, msg := c.calllistQuery(r)
	if msg != "" {
		d.Message = msg
		c.render(w, r, ss, http.StatusBadRequest, "calllist", "Call list", d)
		return
	}
	p, err := c.calllistPage(r.Context(), asOf, f, q.Get("page"))
	if errors.Is(err, page.ErrCursor) {
		d.Message = "That page of the list is no longer there: start again from the first page."
		c.render(w, r, ss, http.StatusBadRequest, "calllist", "Call list", d)
		return
	}
	if err != nil {
		c.Log.Error("console call list", zap.Error(err))
		c.fail(w, r, ss, http.StatusServiceUnavailable, "The call list cannot be read now: try again in a minute.")
		return
	}
	d.Entries, d.Total = p.Entries, p.Total
	base := url.Values{}
	for _, k := range []string{"rep", "min_days", "max_days", "as_of"} {
		if v := q.Get(k); v != "" {
			base.Set(k, v)
		}
	}
	d.CSV = "/calllist.csv" + query(base)
	if p.Next != "" {
		nq := cloneValues(base)
		nq.Set("page", p.Next)
		d.Next = "/calllist" + query(nq)
	}
	if q.Get("page") != "" {
		d.First = "/calllist" + query(base)
	}
	c.render(w, r, ss, http.StatusOK, "calllist", "Call list", d)
}

func (c *Console) calllistCSV(w http.ResponseWriter, r *http.Request, ss *session) {
	f, asOf, msg := c.calllistQuery(r)
	if msg != "" {
		c.fail(w, r, ss, http.StatusBadRequest, msg)
		return
	}
	es, err := c.Lister.List(r.Context(), asOf, f)
	if err != nil {
		c.fail(w, r, ss, http.StatusServiceUnavailable, "The call list cannot be read now: try again in a minute.")
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="calllist.csv"`)
	if err := calllist.WriteCSV(w, es); err != nil {
		panic(http.ErrAbortHandler)
	}
}

func query(v url.Values) string {
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// pager is a scanned list's links: to the next page, back to the first,
// and the day the scan stopped at before the page filled.
type pager struct {
	Next, First string
	Searched    subscription.Date
}

// link sets the links of a page of path listed with base: the next page
// starts after the key whose encoding is next, when the page is full or
// the scan stopped (at end); the first when this page started after a key.
func (p *pager) link(path string, base url.Values, next string, end subscription.Date, full, stopped, after bool) {
	if full || stopped {
		nq := cloneValues(base)
		nq.Set("page", next)
		p.Next = path + query(nq)
		if stopped && !full {
			p.Searched = end
		}
	}
	if after {
		p.First = path + query(base)
	}
}

// --- subscriptions ---

type subscriptionsData struct {
	Q, From string
	Subs    []subscription.Subscription
	pager
	Empty      bool // nothing stored in the range at all, no search
	Message    string
	ExactMatch bool
}

func (d subscriptionsData) flash() (string, string) { return "", d.Message }

// scanBudget bounds the records one page of a search reads, so that a
// search that matches little answers quickly: the page then offers to
// search further.
const scanBudget = 500

// horizon is how far after the start (a year back from today) the
// subscription list looks: five years ahead.
const horizon = 6 * 366

func (c *Console) subscriptions(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	d := subscriptionsData{Q: strings.TrimSpace(q.Get("q")), From: q.Get("from")}
	from := c.today().AddDays(-365)
	if d.From != "" {
		f, err := subscription.ParseDate(d.From)
		if err != nil {
			d.Message = "From: " + err.Error() + "."
			c.render(w, r, ss, http.StatusBadRequest, "subscriptions", "Subscriptions", d)
			return
		}
		from = f
	}
	if strings.Contains(d.Q, "@") {
		// An address would stay in the browser's history and the
		// server's access logs: the search is of ids and names only.
		d.Q = ""
		d.Message = "Search by id, customer, product or account: email addresses are not searched, so that none ends up in a URL."
		c.render(w, r, ss, http.StatusBadRequest, "subscriptions", "Subscriptions", d)
		return
	}
	var after *subKey
	if cur := q.Get("page"); cur != "" {
		k, err := decodeSubKey(cur)
		if err != nil {
			d.Message = "That page of the list is no longer there: start again from the first page."
			c.render(w, r, ss, http.StatusBadRequest, "subscriptions", "Subscriptions", d)
			return
		}
		after = &k
	}
	ctx := r.Context()
	if after == nil && d.Q != "" && subscription.ValidID(d.Q) == nil {
		if sub, err := c.Store.Get(ctx, d.Q); err == nil {
			d.Subs, d.ExactMatch = append(d.Subs, sub), true
		}
	}
	needle := strings.ToLower(d.Q)
	match := func(s subscription.Subscription) bool {
		if needle == "" {
			return true
		}
		if d.ExactMatch && s.ID == d.Subs[0].ID {
			return false // shown first already
		}
		for _, v := range []string{s.ID, s.CustomerName, s.Product, s.CustomerAccount} {
			if strings.Contains(strings.ToLower(v), needle) {
				return true
			}
		}
		return false
	}
	start := from
	if after != nil && after.end.After(start) {
		start = after.end
	}
	end := from.AddDays(horizon)
	read := 0
	var last subKey
	full, stopped := false, false
	for win, span := start, 1; !win.After(end) && !full && !stopped; win, span = win.AddDays(span), min(span*2, 64) {
		to := win.AddDays(span - 1)
		err := c.Store.EndingBetween(ctx, win, to, func(s subscription.Subscription) error {
			k := subKey{s.EndDate, s.ID}
			if after != nil && k.compare(*after) <= 0 {
				return nil
			}
			if len(d.Subs) == pageSize+btoi(d.ExactMatch) {
				full = true
				return errStop
			}
			read++
			last = k
			if match(s) {
				d.Subs = append(d.Subs, s)
			}
			if read >= scanBudget {
				stopped = true
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			c.Log.Error("console subscriptions", zap.Error(err))
			c.fail(w, r, ss, http.StatusServiceUnavailable, "The subscriptions cannot be read now: try again in a minute.")
			return
		}
	}
	base := url.Values{}
	if d.Q != "" {
		base.Set("q", d.Q)
	}
	if d.From != "" {
		base.Set("from", d.From)
	}
	d.link("/subscriptions", base, last.encode(), last.end, full, stopped, after != nil)
	d.Empty = len(d.Subs) == 0 && d.Q == "" && after == nil
	c.render(w, r, ss, http.StatusOK, "subscriptions", "Subscriptions", d)
}

func minDate(a, b subscription.Date) subscription.Date {
	if a.After(b) {
		return b
	}
	return a
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

var errStop = errors.New("page full")

type subKey struct {
	end subscription.Date
	id  string
}

func (a subKey) compare(b subKey) int {
	return cmp.Or(cmp.Compare(a.end.Ordinal(), b.end.Ordinal()), strings.Compare(a.id, b.id))
}

func (a subKey) encode() string { return page.Encode(a.end.String(), a.id) }

func decodeSubKey(c string) (subKey, error) {
	f, err := page.Decode(c, 2)
	if err != nil {
		return subKey{}, err
	}
	d, err := subscription.ParseDate(f[0])
	if err != nil || subscription.ValidID(f[1]) != nil {
		return subKey{}, page.ErrCursor
	}
	return subKey{d, f[1]}, nil
}

type subscriptionData struct {
	Sub        subscription.Subscription
	DaysLeft   int
	Unused     string
	Notices    []subscription.Entry
	Previews   []previewView
	CanErase   bool
	Message    string
	Milestones subscription.Milestones
	Calls      callsSection
	CanResend  bool
	Error      string
}

func (d subscriptionData) flash() (string, string) { return d.Message, d.Error }

type previewView struct {
	Open      bool // the milestone of the latest notice: shown unfolded
	Milestone int
	Subject   string
	Src       string
	Err       string
}

func (c *Console) subscription(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if subscription.ValidID(id) != nil {
		c.fail(w, r, ss, http.StatusNotFound, "That is not a subscription id: search for the subscription instead.")
		return
	}
	sub, err := c.Store.Get(r.Context(), id)
	if errors.Is(err, subscription.ErrNotFound) {
		c.fail(w, r, ss, http.StatusNotFound, fmt.Sprintf("There is no subscription %s: it may have been erased; search for it on the Subscriptions page.", id))
		return
	}
	if err != nil {
		c.fail(w, r, ss, http.StatusServiceUnavailable, "The subscription cannot be read now: try again in a minute.")
		return
	}
	d := subscriptionData{Sub: sub, DaysLeft: sub.DaysLeft(c.Now(), c.loc()), CanErase: ss.role == Operator, CanResend: ss.role == Operator && c.Resend != nil}
	f, ok := ss.takeFlash(id)
	if ok {
		d.Message, d.Error = f.notice, f.err
	}
	d.Calls = c.callsOf(r.Context(), sub, ss, &f)
	if n, ok := sub.UnusedSeats(); ok {
		d.Unused = itoa(n)
	}
	entries, err := c.Ledger.List(r.Context(), id)
	if err != nil {
		c.Log.Warn("console ledger", zap.Error(err))
	}
	slices.SortFunc(entries, func(a, b subscription.Entry) int {
		return cmp.Or(b.At.Compare(a.At), subscription.CompareKeys(a.Key, b.Key))
	})
	d.Notices = entries
	if c.Scheduler != nil {
		d.Milestones = c.Scheduler.Milestones
	}
	for _, m := range slices.Backward(d.Milestones) {
		pv := previewView{Milestone: m, Src: fmt.Sprintf("/subscriptions/%s/preview/%d", id, m), Open: len(entries) > 0 && entries[0].Key.Milestone == m}
		email, err := c.Renderer.Render(sub, previewNotice(sub, m, d.DaysLeft))
		if err != nil {
			pv.Err = err.Error()
		} else {
			pv.Subject = email.Subject
		}
		d.Previews = append(d.Previews, pv)
	}
	c.render(w, r, ss, http.StatusOK, "subscription", sub.ID, d)
}

// previewFrame is one email as the customer gets it, for a sandboxed
// iframe: its own CSP runs nothing and loads nothing.
func (c *Console) previewFrame(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	m, err := strconv.Atoi(r.PathValue("milestone"))
	if subscription.ValidID(id) != nil || err != nil || (c.Scheduler == nil || !slices.Contains(c.Scheduler.Milestones, m)) {
		http.NotFound(w, r)
		return
	}
	sub, err := c.Store.Get(r.Context(), id)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	c.writePreview(w, sub, m)
}

func (c *Console) writePreview(w http.ResponseWriter, sub subscription.Subscription, m int) {
	days := sub.DaysLeft(c.Now(), c.loc())
	email, err := c.Renderer.Render(sub, previewNotice(sub, m, days))
	if err != nil {
		http.Error(w, "this email cannot be drawn: "+err.Error(), http.StatusUnprocessableEntity)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", previewCSP)
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(email.HTML))
}

func (c *Console) erase(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if r.PostForm.Get("confirm") != id {
		c.fail(w, r, ss, http.StatusBadRequest, "To erase, type the subscription id into the box exactly as shown, then press Erase.")
		return
	}
	if err := c.Erase(r.Context(), id); err != nil {
		status, msg := c.ErrorStatus(err)
		c.fail(w, r, ss, status, msg)
		return
	}
	c.changed(id, true)
	c.Log.Info("console erase", zap.String("subscription_id", id), zap.String("role", string(ss.role)))
	c.render(w, r, ss, http.StatusOK, "erased", "Erased", erasedData{ID: id})
}

type erasedData struct{ ID string }

func (d erasedData) flash() (string, string) {
	return "Subscription " + d.ID + " and its personal data are erased.", ""
}

// --- notices ---

type noticeRow struct {
	subscription.Entry
	EndDate subscription.Date
}

type noticesData struct {
	From, To, Outcome string
	Outcomes          []string
	Rows              []noticeRow
	pager
	Message string
}

func (d noticesData) flash() (string, string) { return "", d.Message }

// noticeBudget bounds the subscriptions one page of notices reads (the
// notices of their current term, one ledger read per milestone), a
// noticeBatch at a time with noticeReads ledger reads at once.
const (
	noticeBudget = 200
	noticeBatch  = 100
	noticeReads  = 16
)

func (c *Console) notices(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	today := c.today()
	ms := subscription.DefaultMilestones
	if c.Scheduler != nil {
		ms = c.Scheduler.Milestones
	}
	d := noticesData{
		From: cmp.Or(q.Get("from"), today.AddDays(-c.GraceDays).String()), To: cmp.Or(q.Get("to"), today.AddDays(ms.Max()).String()),
		Outcome:  q.Get("outcome"),
		Outcomes: []string{"", "sent", "skipped", "failed", "undeliverable", "bounced", "open", "ambiguous"},
	}
	bad := func(msg string) {
		d.Message = msg
		c.render(w, r, ss, http.StatusBadRequest, "notices", "Notices", d)
	}
	from, err1 := subscription.ParseDate(d.From)
	to, err2 := subscription.ParseDate(d.To)
	if err := cmp.Or(err1, err2); err != nil {
		bad("End dates: " + err.Error() + ".")
		return
	}
	if !slices.Contains(d.Outcomes, d.Outcome) {
		bad("Outcome: choose one from the list.")
		return
	}
	var after *noticeKey
	if cur := q.Get("page"); cur != "" {
		k, err := decodeNoticeKey(cur)
		if err != nil {
			bad("That page of the list is no longer there: start again from the first page.")
			return
		}
		after = &k
	}
	start := from
	if after != nil && after.end.After(start) {
		start = after.end
	}
	keep := func(e subscription.Entry) bool {
		switch d.Outcome {
		case "":
			return true
		case "open":
			return e.Outcome == ""
		case "ambiguous":
			return e.Ambiguous
		}
		return string(e.Outcome) == d.Outcome
	}
	read := 0
	var last noticeKey
	full, stopped := false, false
	ctx := r.Context()
	// The ledgers are read a batch at a time, several at once; the rows
	// are taken in the order of the end-date index.
	var batch []subKey
	flush := func() error {
		// Each of the current term's milestones is one direct read of
		// the ledger (a listing of a subscription's keys costs far more).
		found := make([][]subscription.Entry, len(batch)*len(ms))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(noticeReads)
		for i, k := range batch {
			for j, m := range ms {
				g.Go(func() error {
					e, err := c.Ledger.Get(gctx, subscription.NoticeKey{SubscriptionID: k.id, EndDate: k.end, Milestone: m})
					if errors.Is(err, subscription.ErrNotFound) {
						return nil
					}
					if err == nil {
						found[i*len(ms)+j] = []subscription.Entry{e}
					}
					return err
				})
			}
		}
		if err := g.Wait(); err != nil {
			return err
		}
		ledgers := make([][]subscription.Entry, len(batch))
		for i := range batch {
			for j := range ms {
				ledgers[i] = append(ledgers[i], found[i*len(ms)+j]...)
			}
		}
		for i, sk := range batch {
			for _, e := range ledgers[i] {
				k := noticeKey{sk.end, sk.id, e.Key}
				if after != nil && k.compare(*after) <= 0 {
					continue
				}
				if len(d.Rows) == pageSize {
					full = true
					return errStop
				}
				last = k
				if keep(e) {
					d.Rows = append(d.Rows, noticeRow{e, sk.end})
				}
			}
			read++
			if read >= noticeBudget {
				if len(ledgers[i]) == 0 {
					last = noticeKey{sk.end, sk.id, subscription.NoticeKey{SubscriptionID: sk.id, EndDate: sk.end, Milestone: 1 << 30}}
				}
				stopped = true
				return errStop
			}
		}
		batch = batch[:0]
		return nil
	}
	var err error
	// Windows of end dates that grow from a day: a full store fills the
	// page from its first days without listing weeks of its index.
	for win, span := start, 1; err == nil && !win.After(to); win, span = win.AddDays(span), min(span*2, 64) {
		err = c.Store.EndingBetween(ctx, win, minDate(win.AddDays(span-1), to), func(s subscription.Subscription) error {
			if after != nil && (subKey{s.EndDate, s.ID}).compare(subKey{after.end, after.id}) < 0 {
				return nil
			}
			batch = append(batch, subKey{s.EndDate, strings.Clone(s.ID)})
			if len(batch) == noticeBatch {
				return flush()
			}
			return nil
		})
	}
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	if err != nil && !errors.Is(err, errStop) {
		c.Log.Error("console notices", zap.Error(err))
		c.fail(w, r, ss, http.StatusServiceUnavailable, "The notices cannot be read now: try again in a minute.")
		return
	}
	base := url.Values{}
	for _, k := range []string{"from", "to", "outcome"} {
		if v := q.Get(k); v != "" {
			base.Set(k, v)
		}
	}
	d.link("/notices", base, last.encode(), last.end, full, stopped, after != nil)
	c.render(w, r, ss, http.StatusOK, "notices", "Notices", d)
}

type noticeKey struct {
	end subscription.Date
	id  string
	key subscription.NoticeKey
}

func (a noticeKey) compare(b noticeKey) int {
	return cmp.Or((subKey{a.end, a.id}).compare(subKey{b.end, b.id}), subscription.CompareKeys(a.key, b.key))
}

func (a noticeKey) encode() string {
	return page.Encode(a.end.String(), a.id, a.key.EndDate.String(), itoa(a.key.Milestone))
}

func decodeNoticeKey(c string) (noticeKey, error) {
	f, err := page.Decode(c, 4)
	if err != nil {
		return noticeKey{}, err
	}
	end, err1 := subscription.ParseDate(f[0])
	kend, err2 := subscription.ParseDate(f[2])
	m, err3 := strconv.Atoi(f[3])
	if cmp.Or(err1, err2, err3) != nil || subscription.ValidID(f[1]) != nil {
		return noticeKey{}, page.ErrCursor
	}
	return noticeKey{end, f[1], subscription.NoticeKey{SubscriptionID: f[1], EndDate: kend, Milestone: m}}, nil
}

// --- import ---

type importData struct {
	CanImport bool
	Name      string
	Report    *importer.Report
	Message   string
}

func (d importData) flash() (string, string) { return "", d.Message }

func (c *Console) importPage(w http.ResponseWriter, r *http.Request, ss *session) {
	c.render(w, r, ss, http.StatusOK, "import", "Import", importData{CanImport: ss.role == Operator})
}

func (c *Console) importFile(w http.ResponseWriter, r *http.Request, ss *session) {
	d := importData{CanImport: true}
	fh := r.MultipartForm.File["file"]
	if len(fh) != 1 {
		d.Message = "Choose one file to import: a .csv, .xlsx, .json or .ndjson export."
		c.render(w, r, ss, http.StatusBadRequest, "import", "Import", d)
		return
	}
	f, err := fh[0].Open()
	if err != nil {
		d.Message = "The file could not be read: choose it again."
		c.render(w, r, ss, http.StatusBadRequest, "import", "Import", d)
		return
	}
	defer f.Close()
	d.Name = path.Base(fh[0].Filename)
	var format importer.Format
	switch strings.ToLower(path.Ext(d.Name)) {
	case ".csv":
		format = importer.FormatCSV
	case ".json":
		format = importer.FormatJSON
	case ".ndjson", ".jsonl":
		format = importer.FormatNDJSON
	case ".xlsx":
		format = importer.FormatXLSX
	}
	report, err := c.Import(r.Context(), f, importer.Options{Format: format})
	if err != nil {
		status, msg := c.ErrorStatus(err)
		d.Message = msg
		c.render(w, r, ss, status, "import", "Import", d)
		return
	}
	d.Report = &report
	c.changed("", true)
	c.Log.Info("console import", zap.Int("rows", report.Rows), zap.Int("rejected", report.Rejected))
	c.render(w, r, ss, http.StatusOK, "import", "Import", d)
}

// --- templates ---

type templatesData struct {
	SubscriptionID string
	Milestone      int
	Locale         string
	Milestones     subscription.Milestones
	Locales        []string
	Sample         bool
	Email          render.Email
	Src            string
	Message        string
}

func (d templatesData) flash() (string, string) { return "", d.Message }

// templateSub returns the subscription a template is drawn for, with the
// locale asked for: the chosen one, else the sample.
func (c *Console) templateSub(r *http.Request) (subscription.Subscription, int, string, bool, string) {
	q := r.URL.Query()
	ms := c.Scheduler.Milestones
	m := ms.Max()
	if v := q.Get("milestone"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || !slices.Contains(ms, n) {
			return subscription.Subscription{}, 0, "", false, "Milestone: choose one from the list."
		}
		m = n
	}
	locale := q.Get("locale")
	if locale != "" && !slices.Contains(c.Renderer.Locales(), locale) {
		return subscription.Subscription{}, 0, "", false, "Locale: choose one from the list."
	}
	sub, sample := render.SampleSubscription(), true
	if id := strings.TrimSpace(q.Get("subscription_id")); id != "" {
		if subscription.ValidID(id) != nil {
			return sub, m, locale, true, "That is not a subscription id: copy it from the Subscriptions page."
		}
		s, err := c.Store.Get(r.Context(), id)
		if err != nil {
			return sub, m, locale, true, fmt.Sprintf("There is no subscription %s: the sample is shown instead.", id)
		}
		sub, sample = s, false
	}
	if locale != "" {
		sub.Locale = locale
	}
	return sub, m, locale, sample, ""
}

func (c *Console) templates(w http.ResponseWriter, r *http.Request, ss *session) {
	sub, m, locale, sample, msg := c.templateSub(r)
	d := templatesData{
		SubscriptionID: r.URL.Query().Get("subscription_id"), Milestone: m, Locale: locale,
		Milestones: c.Scheduler.Milestones, Locales: c.Renderer.Locales(), Sample: sample, Message: msg,
	}
	if m == 0 {
		c.render(w, r, ss, http.StatusBadRequest, "templates", "Templates", d)
		return
	}
	days := sub.DaysLeft(c.Now(), c.loc())
	email, err := c.Renderer.Render(sub, previewNotice(sub, m, days))
	if err != nil {
		d.Message = "This template cannot be drawn: " + err.Error()
	}
	d.Email = email
	pq := url.Values{"milestone": {itoa(m)}}
	if !sample {
		pq.Set("subscription_id", sub.ID)
	}
	if locale != "" {
		pq.Set("locale", locale)
	}
	d.Src = "/templates/preview" + query(pq)
	c.render(w, r, ss, http.StatusOK, "templates", "Templates", d)
}

func (c *Console) templatePreview(w http.ResponseWriter, r *http.Request, ss *session) {
	sub, m, _, _, msg := c.templateSub(r)
	if m == 0 {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	c.writePreview(w, sub, m)
}

// previewNotice is the notice of milestone m as it would go with days
// left: a milestone before the end date counts down to it at most from m;
// the post-expiry one (m < 0) is drawn as if sent on its day or later.
func previewNotice(sub subscription.Subscription, m, days int) subscription.Notice {
	left := min(m, max(days, 0))
	if m < 0 {
		left = min(m, days)
	}
	return subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: sub.ID, EndDate: sub.EndDate, Milestone: m}, DaysLeft: left}
}
