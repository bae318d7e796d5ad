package api

import (
	"context"
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
	"renewals/pkg/render"
	"renewals/pkg/subscription"
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
	// OnImport, when set, is told the report of every import, for metrics.
	OnImport func(importer.Report)
	// OutboxDir is where the outbox writes emails (<data dir>/outbox); an
	// erasure deletes the subscription's emails there. Empty: none kept.
	OutboxDir string
}

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("POST /api/v1/subscriptions/import", s.wrap(s.importSubscriptions))
	api.HandleFunc("GET /api/v1/subscriptions/{id}", s.wrap(s.getSubscription))
	api.HandleFunc("PUT /api/v1/subscriptions/{id}", s.wrap(s.putSubscription))
	api.HandleFunc("DELETE /api/v1/subscriptions/{id}", s.wrap(s.eraseSubscription))
	api.HandleFunc("POST /api/v1/scheduler/run", s.wrap(s.runScheduler))
	api.HandleFunc("GET /api/v1/forecast", s.wrap(s.forecast))
	api.HandleFunc("GET /api/v1/notices", s.wrap(s.notices))
	api.HandleFunc("POST /api/v1/preview", s.wrap(s.preview))
	if s.Calllist != nil {
		api.Handle("GET /api/v1/calllist", s.Calllist)
	}
	if s.Events != nil {
		api.Handle("GET /api/v1/events", s.Events)
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
		mux.Handle("/api/", requireToken(s.Token, api))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "renewals: API under /api/v1 (bearer token), /healthz, /readyz, /metrics")
	})
	return logRequests(s.Log, mux)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.Ready != nil {
		if err := s.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, Error{"not ready: " + err.Error(), CodeUnavailable})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) importSubscriptions(w http.ResponseWriter, r *http.Request) error {
	body := http.MaxBytesReader(w, r.Body, s.MaxImportBytes)
	format := formatOf(r.Header.Get("Content-Type"))
	events := s.upsertEvents(r.Context())
	report, err := importer.Import(r.Context(), body, importer.Options{
		Store:    s.Store,
		Format:   format,
		OnUpsert: events.add,
	})
	// Whatever the outcome, the rows stored so far have their events out:
	// wait for JetStream to take them before answering.
	evErr := events.wait()
	if errors.Is(err, importer.ErrTooLarge) {
		return errorf(CodeTooLarge, "the import is larger than %d bytes: split the file, or start the server with a larger --max-import-bytes (RENEWALS_MAX_IMPORT_BYTES)", s.MaxImportBytes)
	}
	if err != nil {
		var fe *importer.FileError
		if errors.As(err, &fe) {
			return errorf(CodeUnprocessable, "%v", err)
		}
		return fmt.Errorf("import: %w", err)
	}
	if s.OnImport != nil {
		s.OnImport(report)
	}
	if evErr != nil {
		return evErr
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}

func formatOf(contentType string) importer.Format {
	switch {
	case contentType == "":
		return ""
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

// PublishUpsert publishes renewals.subscription.upserted for one record,
// asynchronously: an import of a million rows must not wait on each. The
// future tells when the stream has it.
func PublishUpsert(ctx context.Context, js jetstream.JetStream, now time.Time, sub subscription.Subscription, res subscription.UpsertResult) (jetstream.PubAckFuture, error) {
	ev, err := event.New(event.SubjectUpserted, sub.ID, now, event.SubscriptionUpserted{
		SubscriptionID: sub.ID, Change: res.Change, EndDate: sub.EndDate, Status: sub.Status,
		NewTerm: res.Change == subscription.Updated && res.PreviousEndDate != sub.EndDate,
	})
	if err != nil {
		return nil, err
	}
	data, err := eventJSON(ev)
	if err != nil {
		return nil, err
	}
	return js.PublishAsync(event.SubjectUpserted, data)
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
	writeJSON(w, http.StatusOK, Record(sub))
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
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
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
	writeJSON(w, http.StatusOK, map[string]any{"subscription_id": id, "change": res[0].Change})
	return nil
}

func (s *Server) eraseSubscription(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validPathID(id); err != nil {
		return err
	}
	err := s.Store.Erase(r.Context(), id)
	if err := s.eraseOutbox(id); err != nil {
		return err
	}
	if errors.Is(err, subscription.ErrNotFound) {
		return errorf(CodeNotFound, "no subscription %q", id)
	}
	if err != nil {
		return err
	}
	if err := natsbus.Emit(r.Context(), s.JS, event.SubjectErased, id, s.Now(), event.SubscriptionErased{SubscriptionID: id}); err != nil {
		s.Log.Warn("publish erased event", zap.String("subscription_id", id), zap.Error(err))
	}
	s.Log.Info("subscription erased", zap.String("subscription_id", id))
	writeJSON(w, http.StatusOK, map[string]string{"subscription_id": id, "status": "erased"})
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
	writeJSON(w, http.StatusOK, resp)
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

func (s *Server) forecast(w http.ResponseWriter, r *http.Request) error {
	from, err := s.queryDate(r, "from")
	if err != nil {
		return err
	}
	days := 14
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 366 {
			return errorf(CodeInvalid, "days %q: use a whole number from 1 to 366", v)
		}
		days = n
	}
	out, err := s.Scheduler.Forecast(r.Context(), from, days)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "days": out})
	return nil
}

func (s *Server) notices(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("subscription_id")
	if id == "" {
		return s.allNotices(w, r)
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
	writeJSON(w, http.StatusOK, map[string]any{"subscription_id": id, "notices": entries})
	return nil
}

// allNotices lists the ledger of every subscription in the renewal period
// (from GraceDays after the end date to the largest milestone before it) on
// today, or on the as_of date.
func (s *Server) allNotices(w http.ResponseWriter, r *http.Request) error {
	today, err := s.queryDate(r, "as_of")
	if err != nil {
		return err
	}
	from, _ := subscription.Window(today.AddDays(-s.GraceDays), s.Scheduler.Milestones)
	_, to := subscription.Window(today, s.Scheduler.Milestones)
	entries := []subscription.Entry{}
	err = s.Store.EndingBetween(r.Context(), from, to, func(sub subscription.Subscription) error {
		es, err := s.Ledger.List(r.Context(), sub.ID)
		entries = append(entries, es...)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "notices": entries})
	return nil
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
	if req.Milestone < 1 {
		return errorf(CodeInvalid, "milestone: give the days before the end date, e.g. 45")
	}
	key := subscription.NoticeKey{SubscriptionID: sub.ID, EndDate: sub.EndDate, Milestone: req.Milestone}
	email, err := s.Renderer.Render(sub, subscription.Notice{Key: key, DaysLeft: sub.DaysLeft(s.Now(), s.Location)})
	if err != nil {
		return errorf(CodeUnprocessable, "render: %v", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"notice_key": key.String(), "subject": email.Subject, "text": email.Text, "html": email.HTML,
	})
	return nil
}
