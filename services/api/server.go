package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/importer"
	"renewals/pkg/natsbus"
	"renewals/pkg/page"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/services/bounces"
	"renewals/services/scheduler"
)

// Server is the HTTP API. Its fields are set once by the caller.
type Server struct {
	Store     subscription.Store
	Ledger    subscription.Ledger
	JS        jetstream.JetStream
	Scheduler *scheduler.Scheduler
	Renderer  *render.Renderer
	Location  *time.Location
	Now       func() time.Time
	Log       *zap.Logger
	Token     string
	// APIDisabled leaves /api out: the process runs other targets only.
	APIDisabled bool
	// GraceDays is how long after its end date a subscription still counts
	// as in its renewal period (RENEWALS_GRACE_DAYS).
	GraceDays int
	// MaxImportBytes bounds an import body; larger answers 413.
	MaxImportBytes int64
	// WaitTimeout bounds `run --wait`.
	WaitTimeout time.Duration
	// Stopping, when set, ends when the server shuts down: a `run --wait`
	// then answers at once instead of holding the shutdown (which waits
	// for every request) for its whole drain time.
	Stopping context.Context
	// Ready reports whether NATS and the store can be reached.
	Ready func(ctx context.Context) error
	// Metrics serves /metrics; Calllist and Events serve their routes when set.
	Metrics  http.Handler
	Calllist http.Handler
	Events   http.Handler
	// Calls serves GET and POST /api/v1/subscriptions/{id}/calls and
	// Report GET /api/v1/report/renewals, when set.
	Calls  http.Handler
	Report http.Handler
	// OnImport, when set, is told the report of every import, for metrics.
	OnImport func(importer.Report)
	// Console, when set, serves every other path of an api target: the
	// web console (package console), with its own sign-in.
	Console http.Handler
	// Timeouts are the HTTP server's; zero means DefaultTimeouts().
	Timeouts Timeouts
	// HeavyReads bounds the call-list, forecast and all-notices reads that
	// run at once (as many again may wait; beyond, 429). Zero means
	// DefaultHeavyReads().
	HeavyReads int
	// TempDir is where an imported workbook is unpacked while it is read;
	// empty: the system's temporary directory.
	TempDir string
	// Bounces handles resends and hand-fed bounces (bounce.go).
	Bounces *bounces.Service
	// OutboxDir is where the outbox writes emails (<data dir>/outbox); an
	// erasure deletes the subscription's emails there. Empty: none kept.
	OutboxDir string
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	heavy := newReadGate(cmp.Or(s.HeavyReads, DefaultHeavyReads())).wrap
	api := http.NewServeMux()
	api.HandleFunc("POST /api/v1/subscriptions/import", s.wrap(s.importSubscriptions))
	api.HandleFunc("POST /api/v1/usage/import", s.wrap(s.importUsage))
	api.HandleFunc("GET /api/v1/subscriptions/{id}", s.wrap(s.getSubscription))
	api.HandleFunc("PUT /api/v1/subscriptions/{id}", s.wrap(s.putSubscription))
	api.HandleFunc("DELETE /api/v1/subscriptions/{id}", s.wrap(s.eraseSubscription))
	api.HandleFunc("POST /api/v1/scheduler/run", s.wrap(s.runScheduler))
	api.Handle("GET /api/v1/forecast", heavy(s.wrap(s.forecast)))
	api.HandleFunc("GET /api/v1/notices", s.wrap(s.notices(heavy(s.wrap(s.allNotices)))))
	api.HandleFunc("POST /api/v1/preview", s.wrap(s.preview))
	s.bounceRoutes(api)
	if s.Calllist != nil {
		api.Handle("GET /api/v1/calllist", heavy(s.Calllist))
	}
	if s.Events != nil {
		api.Handle("GET /api/v1/events", s.Events)
	}
	if s.Calls != nil {
		api.Handle("POST /api/v1/subscriptions/{id}/calls", s.Calls)
		api.Handle("GET /api/v1/subscriptions/{id}/calls", s.Calls)
	}
	if s.Report != nil {
		api.Handle("GET /api/v1/report/renewals", heavy(s.Report))
	}
	api.HandleFunc("/api/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}))

	mux := http.NewServeMux()
	if s.APIDisabled {
		mux.HandleFunc("/api/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
			return errorf(CodeNotFound, "this process does not run the api target: send API requests to the one that does")
		}))
	} else {
		mux.Handle("/api/", requireToken(s.Token, s.timeouts(), api))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		page.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	if s.Console != nil && !s.APIDisabled {
		mux.Handle("/", s.Console)
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "renewals: API under /api/v1 (bearer token), /healthz, /readyz, /metrics")
		})
	}
	return logRequests(s.Log, guardBody(mux))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			page.WriteJSON(w, http.StatusServiceUnavailable, Error{"not ready: " + err.Error(), CodeUnavailable})
			return
		}
	}
	page.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) importSubscriptions(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, s.MaxImportBytes)
	opts, err := importOptions(r, importer.ParseMap)
	if err != nil {
		return err
	}
	report, err := s.Import(r.Context(), body, opts)
	if err != nil {
		return err
	}
	page.WriteJSON(w, http.StatusOK, report)
	return nil
}

// Import stores the subscriptions of one file (opts.Format, or detected
// when empty; opts.Sheet, DateFormat and Map as the query gives them), with
// their upserted events in the stream before it returns, and reports each
// row: what POST /api/v1/subscriptions/import and the console's import page
// both do. body should be bounded by MaxImportBytes (http.MaxBytesReader);
// its error carries the code the API answers with.
func (s *Server) Import(ctx context.Context, body io.Reader, opts importer.Options) (importer.Report, error) {
	events := s.upsertEvents(ctx)
	opts.Store, opts.OnUpsert, opts.TempDir = s.Store, events.add, s.TempDir
	report, err := importer.Import(ctx, body, opts)
	// Whatever the outcome, the rows stored so far have their events out:
	// wait for JetStream to take them before answering.
	evErr := events.wait()
	if errors.Is(err, importer.ErrTooLarge) {
		return report, errorf(CodeTooLarge, "the import is larger than %d bytes: split the file, or start the server with a larger --max-import-bytes (RENEWALS_MAX_IMPORT_BYTES)", s.MaxImportBytes)
	}
	if err != nil {
		var fe *importer.FileError
		if errors.As(err, &fe) {
			return report, errorf(CodeUnprocessable, "%v", err)
		}
		return report, fmt.Errorf("import: %w", err)
	}
	if s.OnImport != nil {
		s.OnImport(report)
	}
	if evErr != nil {
		return report, evErr
	}
	return report, nil
}

// importOptions reads an import's format from its Content-Type and its
// query parameters: sheet (of a workbook), date_format (DD/MM/YYYY or
// MM/DD/YYYY) and map, repeated, one "their column=our field" each, read by
// parseMap.
func importOptions(r *http.Request, parseMap func(io.Reader) (map[string]string, error)) (importer.Options, error) {
	q := r.URL.Query()
	o := importer.Options{Format: formatOf(r.Header.Get("Content-Type"))}
	df, err := importer.ParseDateFormat(q.Get("date_format"))
	if err != nil {
		return o, errorf(CodeInvalid, "date_format: %v", err)
	}
	o.DateFormat, o.Sheet = df, q.Get("sheet")
	if maps := q["map"]; len(maps) > 0 {
		if o.Map, err = parseMap(strings.NewReader(strings.Join(maps, "\n"))); err != nil {
			return o, errorf(CodeInvalid, "map: %v", err)
		}
	}
	return o, nil
}

// ContentTypeXLSX is the media type of an .xlsx workbook.
const ContentTypeXLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

func formatOf(contentType string) importer.Format {
	switch {
	case contentType == "":
		return ""
	case startsWith(contentType, ContentTypeXLSX):
		return importer.FormatXLSX
	case startsWith(contentType, "text/csv"):
		return importer.FormatCSV
	case startsWith(contentType, "application/x-ndjson"), startsWith(contentType, "application/ndjson"):
		return importer.FormatNDJSON
	case startsWith(contentType, "application/json"):
		return importer.FormatJSON
	}
	return ""
}

func startsWith(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

// upsertData is the renewals.subscription.upserted event of one record.
func upsertData(now time.Time, sub subscription.Subscription, res subscription.UpsertResult) ([]byte, error) {
	ev, err := event.New(event.SubjectUpserted, sub.ID, now, event.SubscriptionUpserted{
		SubscriptionID: sub.ID, Change: res.Change, EndDate: sub.EndDate, Status: sub.Status,
		NewTerm: res.Change == subscription.Updated && res.PreviousEndDate != sub.EndDate,
	})
	if err != nil {
		return nil, err
	}
	return eventJSON(ev)
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) error {
	if err := validPathID(r.PathValue("id")); err != nil {
		return err
	}
	sub, err := s.Store.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, subscription.ErrNotFound) {
		return errorf(CodeNotFound, "no subscription %q", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	page.WriteJSON(w, http.StatusOK, Record(sub))
	return nil
}

func (s *Server) putSubscription(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validPathID(id); err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, importer.MaxRowBytes))
	if err != nil {
		return errorf(CodeTooLarge, "a subscription record is at most %d bytes", importer.MaxRowBytes)
	}
	sub, ferrs := importer.ValidateJSON(body)
	if len(ferrs) == 0 && sub.ID != id {
		ferrs = []importer.FieldError{{Field: "subscription_id", Reason: fmt.Sprintf("%q in the body does not match %q in the path", sub.ID, id)}}
	}
	if len(ferrs) > 0 {
		page.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"error": "the record is not valid: " + ferrs[0].Error(), "code": CodeUnprocessable, "fields": fieldReasons(ferrs),
		})
		return nil
	}
	res, err := s.Store.Upsert(r.Context(), []subscription.Subscription{sub})
	if err != nil {
		return err
	}
	events := s.upsertEvents(r.Context())
	events.add(sub, res[0])
	if err := events.wait(); err != nil {
		return err
	}
	page.WriteJSON(w, http.StatusOK, map[string]any{"subscription_id": id, "change": res[0].Change})
	return nil
}

func (s *Server) eraseSubscription(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.Erase(r.Context(), id); err != nil {
		return err
	}
	page.WriteJSON(w, http.StatusOK, map[string]string{"subscription_id": id, "status": "erased"})
	return nil
}

// Erase removes one subscription and its personal data (its emails in the
// outbox too) and publishes renewals.subscription.erased: what DELETE
// /api/v1/subscriptions/{id} and the console's erase button both do. An
// unknown id returns an error the API answers 404 for.
func (s *Server) Erase(ctx context.Context, id string) error {
	if err := validPathID(id); err != nil {
		return err
	}
	err := s.Store.Erase(ctx, id)
	if err := s.eraseOutbox(id); err != nil {
		return err
	}
	if errors.Is(err, subscription.ErrNotFound) {
		return errorf(CodeNotFound, "no subscription %q", id)
	}
	if err != nil {
		return err
	}
	if err := natsbus.Emit(ctx, s.JS, event.SubjectErased, id, s.Now(), event.SubscriptionErased{SubscriptionID: id}); err != nil {
		s.Log.Warn("publish erased event", zap.String("subscription_id", id), zap.Error(err))
	}
	s.Log.Info("subscription erased", zap.String("subscription_id", id))
	return nil
}

// RunRequest is the body of POST /api/v1/scheduler/run.
type RunRequest struct {
	AsOf   string `json:"as_of,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	Wait   bool   `json:"wait,omitempty"`
	// Timeout bounds the wait (a Go duration such as "90s"); past it the
	// answer lists what is still open instead of the outcomes. Empty: the
	// server's own bound.
	Timeout string `json:"timeout,omitempty"`
}

// RunResponse is its answer: the pass's result and, with wait, the count of
// each final outcome.
type RunResponse struct {
	scheduler.Result
	Outcomes map[subscription.Outcome]int `json:"outcomes,omitempty"`
	// Open counts the notices still without an outcome when the wait's
	// timeout ran out, and StillOpen says in a sentence what they wait for.
	Open      int    `json:"open,omitempty"`
	StillOpen string `json:"still_open,omitempty"`
}

func (s *Server) runScheduler(w http.ResponseWriter, r *http.Request) error {
	var req RunRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	waitFor := s.WaitTimeout
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			return errorf(CodeInvalid, "timeout %q is not a duration: use e.g. 90s or 10m", req.Timeout)
		}
		waitFor = min(d, s.WaitTimeout)
	}
	var asOf subscription.Date
	if req.AsOf != "" {
		d, err := subscription.ParseDate(req.AsOf)
		if err != nil {
			return errorf(CodeInvalid, "as_of: %v", err)
		}
		asOf = d
	}
	ctx := r.Context()
	var outcomes *scheduler.Outcomes
	if req.Wait && !req.DryRun {
		o, err := scheduler.WatchOutcomes(s.JS.Conn())
		if err != nil {
			return err
		}
		defer o.Close()
		outcomes = o
	}
	res, err := s.Scheduler.Pass(ctx, asOf, req.DryRun)
	if err != nil {
		return err
	}
	resp := RunResponse{Result: res}
	if outcomes != nil {
		wctx, cancel := context.WithTimeout(ctx, waitFor)
		defer cancel()
		if s.Stopping != nil {
			defer context.AfterFunc(s.Stopping, cancel)()
		}
		counts, err := outcomes.Wait(wctx, s.Ledger, res.Keys, res.DuplicateKeys)
		resp.Outcomes = counts
		var oe *scheduler.OpenError
		switch {
		case err == nil:
		case errors.As(err, &oe) && (ctx.Err() != nil || s.Stopping != nil && s.Stopping.Err() != nil):
			// The server is shutting down (or the client left): answer
			// at once; the notices go on once a notifier runs.
			return errorf(CodeUnavailable, "the server is shutting down with %d notices still without an outcome: they are sent once a notifier runs again; `renewals notices` shows them", len(oe.Keys))
		case errors.As(err, &oe) && req.Timeout != "":
			resp.Open = len(oe.Keys)
			resp.StillOpen = s.stillOpen(context.WithoutCancel(ctx), oe.Keys, waitFor)
		default:
			return errorf(CodeUnavailable, "the pass published %d notices but not all reached an outcome within %v (%v): is a notifier running?", res.Published, waitFor, err)
		}
	}
	page.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// stillOpen says what the open notices wait for, from their ledger entries:
// a notifier to take them, or another attempt after a send that did not go
// (with the commonest reason the attempts gave, which names no address).
func (s *Server) stillOpen(ctx context.Context, keys []subscription.NoticeKey, after time.Duration) string {
	const sample = 1000 // enough to say why; a look-up each
	untaken, sending, retrying := 0, 0, 0
	reasons := map[string]int{}
	for i, k := range keys {
		if i == sample {
			break
		}
		e, err := s.Ledger.Get(ctx, k)
		switch {
		case err != nil || e.Attempts == 0:
			untaken++
		case e.Reason == "":
			sending++ // claimed, no attempt has failed yet
		default:
			retrying++
			reasons[e.Reason]++
		}
	}
	var parts []string
	if sending > 0 {
		parts = append(parts, fmt.Sprintf("%d being sent, waiting on the SMTP relay", sending))
	}
	if retrying > 0 {
		r, n := commonest(reasons)
		parts = append(parts, fmt.Sprintf("%d retrying after a failed attempt (%d of them: %s)", retrying, n, r))
	}
	if untaken > 0 {
		parts = append(parts, fmt.Sprintf("%d not yet taken by a notifier: is one running?", untaken))
	}
	if len(keys) > sample {
		parts = append(parts, fmt.Sprintf("%d more not looked at", len(keys)-sample))
	}
	return fmt.Sprintf("%d notices still open after %v: %s", len(keys), after, strings.Join(parts, "; "))
}

// commonest returns the most frequent key of counts and its count, the
// smallest key on a tie.
func commonest(counts map[string]int) (string, int) {
	best, n := "", 0
	for k, c := range counts {
		if c > n || c == n && k < best {
			best, n = k, c
		}
	}
	return best, n
}

// queryDate reads the date in query parameter name, or today in the
// default zone when the request names none.
func (s *Server) queryDate(r *http.Request, name string) (subscription.Date, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return subscription.Today(s.Now(), s.Location), nil
	}
	d, err := subscription.ParseDate(v)
	if err != nil {
		return subscription.Date{}, errorf(CodeInvalid, "%s: %v", name, err)
	}
	return d, nil
}

// forecast streams the forecast: the days as JSON objects, each with its
// notices, encoded as they are written. limit bounds the notices of one
// answer; then next_cursor (after the days) resumes after the last.
func (s *Server) forecast(w http.ResponseWriter, r *http.Request) error {
	from, err := s.queryDate(r, "from")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	days := 14
	if v := q.Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 366 {
			return errorf(CodeInvalid, "days %q: use a whole number from 1 to 366", v)
		}
		days = n
	}
	limit, err := page.Limit(q)
	if err != nil {
		return errorf(CodeInvalid, "%v", err)
	}
	var after *forecastKey
	if c := q.Get("cursor"); c != "" {
		k, err := decodeForecastKey(c)
		if err != nil {
			return errorf(CodeInvalid, "%v", err)
		}
		after = &k
	}
	fw := &forecastWriter{w: w, from: from, day: -1}
	if after != nil {
		fw.day = max(from.DaysUntil(after.day), 0) - 1
	}
	var (
		n    int
		last forecastKey
		next string
	)
	err = s.Scheduler.ForecastEach(r.Context(), from, days, func(day subscription.Date, p scheduler.Planned) error {
		k := forecastKey{day, p.Key.EndDate, p.Key.SubscriptionID}
		if after != nil && k.compare(*after) <= 0 {
			return nil
		}
		if limit > 0 && n == limit {
			next = last.encode()
			return errStop
		}
		n, last = n+1, k
		return fw.notice(day, p)
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	if err != nil && !fw.started {
		return err
	}
	if err == nil {
		end := days - 1
		if next != "" {
			end = fw.day
		}
		err = fw.close(end, next)
	}
	if err != nil {
		s.Log.Warn("forecast cut short", zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	return nil
}

// errStop ends a scan early once a page is full.
var errStop = errors.New("page full")

// forecastKey is where a planned notice stands in a forecast: its day,
// then the subscription's end date and id.
type forecastKey struct {
	day, end subscription.Date
	id       string
}

func (a forecastKey) compare(b forecastKey) int {
	return cmp.Or(cmp.Compare(a.day.Ordinal(), b.day.Ordinal()), cmp.Compare(a.end.Ordinal(), b.end.Ordinal()), strings.Compare(a.id, b.id))
}

func (a forecastKey) encode() string { return page.Encode(a.day.String(), a.end.String(), a.id) }

func decodeForecastKey(c string) (forecastKey, error) {
	f, err := page.Decode(c, 3)
	if err != nil {
		return forecastKey{}, err
	}
	day, err1 := subscription.ParseDate(f[0])
	end, err2 := subscription.ParseDate(f[1])
	if err1 != nil || err2 != nil {
		return forecastKey{}, fmt.Errorf("cursor %q: %w", c, page.ErrCursor)
	}
	return forecastKey{day, end, f[2]}, nil
}

// forecastWriter writes {"from":..,"days":[{"date":..,"notices":[..]},..]}
// a notice at a time, with every day in between, empty or not.
type forecastWriter struct {
	w       io.Writer
	from    subscription.Date
	started bool // the object is open
	day     int  // the days up to this index are written (or skipped)
	open    bool // the day at index day is open: its notices may follow
	anyDay  bool
	notices int // of the open day
	buf     []byte
}

func (f *forecastWriter) notice(day subscription.Date, p scheduler.Planned) error {
	if err := f.advance(f.from.DaysUntil(day)); err != nil {
		return err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	f.buf = f.buf[:0]
	if f.notices > 0 {
		f.buf = append(f.buf, ',')
	}
	f.buf = append(append(f.buf, '\n'), b...)
	f.notices++
	_, err = f.w.Write(f.buf)
	return err
}

// advance writes the days through index i, leaving day i open.
func (f *forecastWriter) advance(i int) error {
	f.buf = f.buf[:0]
	if !f.started {
		f.started = true
		f.buf = fmt.Appendf(f.buf, `{"from":"%s","days":[`, f.from)
	}
	for f.day < i {
		if f.open {
			f.buf = append(f.buf, "]}"...)
		}
		f.day++
		if f.anyDay {
			f.buf = append(f.buf, ',')
		}
		f.buf = fmt.Appendf(f.buf, "\n{\"date\":\"%s\",\"notices\":[", f.from.AddDays(f.day))
		f.anyDay, f.open, f.notices = true, true, 0
	}
	_, err := f.w.Write(f.buf)
	return err
}

// close writes the days through index end and ends the answer, with the
// cursor of the next page when there is one.
func (f *forecastWriter) close(end int, next string) error {
	if err := f.advance(end); err != nil {
		return err
	}
	f.buf = f.buf[:0]
	if f.open {
		f.buf = append(f.buf, "]}"...)
	}
	f.buf = append(f.buf, "\n]"...)
	if next != "" {
		f.buf = fmt.Appendf(f.buf, `,"next_cursor":"%s"`, next)
	}
	f.buf = append(f.buf, "}\n"...)
	_, err := f.w.Write(f.buf)
	return err
}

// notices answers the ledger of one subscription, or passes a request
// without subscription_id to all (the heavy read of every subscription).
func (s *Server) notices(all http.Handler) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := r.URL.Query().Get("subscription_id")
		if id == "" {
			all.ServeHTTP(w, r)
			return nil
		}
		if err := subscription.ValidID(id); err != nil {
			return errorf(CodeInvalid, "%v", err)
		}
		entries, err := s.Ledger.List(r.Context(), id)
		if err != nil {
			return err
		}
		if entries == nil {
			entries = []subscription.Entry{}
		}
		page.WriteJSON(w, http.StatusOK, map[string]any{"subscription_id": id, "notices": entries})
		return nil
	}
}

// allNotices streams the ledger of every subscription in the renewal
// period (from GraceDays after the end date to the largest milestone
// before it) on today, or on the as_of date: each entry is encoded as it
// is read, in the order of the end-date index (end date, subscription id,
// then notice key). limit bounds the entries of one answer; then
// next_cursor (after the entries) resumes after the last, and the next
// page starts its read of the index at the cursor's end date.
func (s *Server) allNotices(w http.ResponseWriter, r *http.Request) error {
	today, err := s.queryDate(r, "as_of")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := page.Limit(q)
	if err != nil {
		return errorf(CodeInvalid, "%v", err)
	}
	from, _ := subscription.Window(today.AddDays(-s.GraceDays), s.Scheduler.Milestones)
	_, to := subscription.Window(today, s.Scheduler.Milestones)
	scanFrom := from
	var after *noticeKey
	if c := q.Get("cursor"); c != "" {
		k, err := decodeNoticeKey(c)
		if err != nil {
			return errorf(CodeInvalid, "%v", err)
		}
		after = &k
		if k.end.Ordinal() > from.Ordinal() {
			scanFrom = k.end
		}
	}
	j := page.NewJSON(w)
	started := false
	var (
		n    int
		last noticeKey
		next string
	)
	err = s.Store.EndingBetween(r.Context(), scanFrom, to, func(sub subscription.Subscription) error {
		if after != nil && (noticeKey{end: sub.EndDate, id: sub.ID}).compareSub(*after) < 0 {
			return nil
		}
		es, err := s.Ledger.List(r.Context(), sub.ID)
		if err != nil {
			return err
		}
		for _, e := range es {
			k := noticeKey{sub.EndDate, sub.ID, e.Key}
			if after != nil && k.compare(*after) <= 0 {
				continue
			}
			if limit > 0 && n == limit {
				next = last.encode()
				return errStop
			}
			if !started {
				started = true
				if err := j.Open("notices", page.Member{Name: "from", Value: from}, page.Member{Name: "to", Value: to}); err != nil {
					return err
				}
			}
			if err := j.Row(e); err != nil {
				return err
			}
			n, last = n+1, k
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	if err != nil && !started {
		return err
	}
	if err == nil && !started {
		err = j.Open("notices", page.Member{Name: "from", Value: from}, page.Member{Name: "to", Value: to})
	}
	if err == nil {
		var tail []page.Member
		if next != "" {
			tail = append(tail, page.Member{Name: "next_cursor", Value: next})
		}
		err = j.Close(tail...)
	}
	if err != nil {
		s.Log.Warn("notices cut short", zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	return nil
}

// noticeKey is where a ledger entry stands in the all-notices answer.
type noticeKey struct {
	end subscription.Date // the subscription's, as the index has it
	id  string
	key subscription.NoticeKey
}

// compareSub orders by subscription only: end date, then id.
func (a noticeKey) compareSub(b noticeKey) int {
	return cmp.Or(cmp.Compare(a.end.Ordinal(), b.end.Ordinal()), strings.Compare(a.id, b.id))
}

func (a noticeKey) compare(b noticeKey) int {
	return cmp.Or(a.compareSub(b), subscription.CompareKeys(a.key, b.key))
}

func (a noticeKey) encode() string { return page.Encode(a.end.String(), a.id, a.key.String()) }

func decodeNoticeKey(c string) (noticeKey, error) {
	f, err := page.Decode(c, 3)
	if err != nil {
		return noticeKey{}, err
	}
	end, err1 := subscription.ParseDate(f[0])
	key, err2 := subscription.ParseNoticeKey(f[2])
	if err1 != nil || err2 != nil {
		return noticeKey{}, fmt.Errorf("cursor %q: %w", c, page.ErrCursor)
	}
	return noticeKey{end, f[1], key}, nil
}

// PreviewRequest is the body of POST /api/v1/preview.
type PreviewRequest struct {
	SubscriptionID string `json:"subscription_id"`
	Milestone      int    `json:"milestone"`
}

func (s *Server) preview(w http.ResponseWriter, r *http.Request) error {
	var req PreviewRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := validPathID(req.SubscriptionID); err != nil {
		return errorf(CodeInvalid, "subscription_id: %v", err)
	}
	sub, err := s.Store.Get(r.Context(), req.SubscriptionID)
	if errors.Is(err, subscription.ErrNotFound) {
		return errorf(CodeNotFound, "no subscription %q", req.SubscriptionID)
	}
	if err != nil {
		return err
	}
	if req.Milestone == 0 {
		return errorf(CodeInvalid, "milestone: give the days before the end date, e.g. 45, or a negative count for a post-expiry notice, e.g. -1")
	}
	key := subscription.NoticeKey{SubscriptionID: sub.ID, EndDate: sub.EndDate, Milestone: req.Milestone}
	email, err := s.Renderer.Render(sub, subscription.Notice{Key: key, DaysLeft: sub.DaysLeft(s.Now(), s.Location)})
	if err != nil {
		return errorf(CodeUnprocessable, "render: %v", err)
	}
	page.WriteJSON(w, http.StatusOK, map[string]string{
		"notice_key": key.String(), "subject": email.Subject, "text": email.Text, "html": email.HTML,
	})
	return nil
}
