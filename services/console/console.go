// Package console is the web console of renewals, for the renewals team and
// for ops: server-rendered pages (html/template) with a little plain
// JavaScript (the live event feed, nothing inline), embedded in the binary
// and served by the api target beside /api.
//
// It reuses what the API uses: the Store and Ledger, the call list's Lister,
// the scheduler's forecast, the email Renderer, and the API's import and
// erase (passed in as functions), so that a page and its JSON endpoint
// cannot disagree.
//
// Sign-in is with the API token (as an operator) or as a user of the users
// file (RENEWALS_USERS_FILE). A session is a random cookie value
// (renewals_session: HttpOnly, SameSite=Strict, Secure behind HTTPS) whose
// hash keys a session in memory; every form carries the session's CSRF
// token; sign-out forgets the session. Personal data (names, emails,
// phones) appears on pages only, never in a URL or a log line.
package console

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"renewals/pkg/calls"
	"renewals/pkg/importer"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/services/calllist"
	"renewals/services/report"
	"renewals/services/scheduler"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Check is one line of the health panel.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Console serves the pages. Set its fields, then call Handler once.
type Console struct {
	Store     subscription.Store
	Ledger    subscription.Ledger
	Lister    *calllist.Lister
	Scheduler *scheduler.Scheduler
	Renderer  *render.Renderer
	// Location is the reseller's zone (RENEWALS_TIMEZONE): times are shown
	// in it, and today is reckoned in it.
	Location  *time.Location
	Now       func() time.Time
	Log       *zap.Logger
	GraceDays int
	// Token is the API token; signing in with it makes an operator.
	Token string
	// UsersFile is RENEWALS_USERS_FILE: name:bcrypt-hash:role a line.
	UsersFile string
	// Import and Erase are the API's (api.Server.Import and .Erase).
	Import         func(ctx context.Context, body io.Reader, opts importer.Options) (importer.Report, error)
	Erase          func(ctx context.Context, id string) error
	MaxImportBytes int64
	// ErrorStatus maps an error of Import or Erase to its status and
	// sentence (api.StatusOf).
	ErrorStatus func(error) (int, string)
	// Events serves the CloudEvents of /api/v1/events, for the live feed.
	Events http.Handler
	// Health checks NATS, the store and SMTP for the overview.
	Health func(ctx context.Context) []Check
	// Metrics is the registry /metrics serves.
	Metrics prometheus.Gatherer
	// Context ends when the server stops: the background work of the
	// overview stops with it.
	Context context.Context
	// LastSeq returns the last sequence of the event stream, so that the
	// live feed starts with the latest events.
	LastSeq func(ctx context.Context) (uint64, error)
	// Report builds the renewals report (GET /api/v1/report/renewals);
	// nil leaves /report out.
	Report *report.Builder
	// LastPass returns the last scheduler pass this process ran, if any.
	LastPass func() (scheduler.Result, time.Time, bool)
	// Calls records and lists the calls (pkg/calls, as the API's
	// /api/v1/subscriptions/{id}/calls); nil leaves the calls out.
	Calls *calls.Service
	// Resend is the API's resend of a notice (api.Server.Resend, as POST
	// /api/v1/notices/{key}/resend); its errors go through ErrorStatus.
	Resend func(ctx context.Context, key subscription.NoticeKey) error

	sessions sessions
	limits   *limiter
	recent   recentOutcomes
	snaps    snapshots
	board    boardState
	reports  reportCache
	pages    map[string]*template.Template
	once     sync.Once
}

// nav is the menu, in order.
var nav = []struct{ Path, Label string }{
	{"/", "Overview"}, {"/calllist", "Call list"}, {"/subscriptions", "Subscriptions"},
	{"/notices", "Notices"}, {"/import", "Import"}, {"/templates", "Templates"}, {"/report", "Report"},
}

// Handler returns the console's routes. Every page but /login needs a
// session: without one a page answers 303 to /login, the event feed 401.
func (c *Console) Handler() http.Handler {
	c.once.Do(c.init)
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(http.FileServerFS(static))))
	mux.HandleFunc("GET /login", c.loginPage)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("POST /logout", c.page(c.logout))
	mux.HandleFunc("GET /{$}", c.page(c.overview))
	mux.HandleFunc("GET /events", c.feed)
	mux.HandleFunc("GET /calllist", c.page(c.calllist))
	mux.HandleFunc("GET /calllist.csv", c.page(c.calllistCSV))
	mux.HandleFunc("GET /subscriptions", c.page(c.subscriptions))
	mux.HandleFunc("GET /subscriptions/{id}", c.page(c.subscription))
	mux.HandleFunc("GET /subscriptions/{id}/preview/{milestone}", c.page(c.previewFrame))
	mux.HandleFunc("POST /subscriptions/{id}/erase", c.page(c.operator(c.erase)))
	mux.HandleFunc("POST /subscriptions/{id}/calls", c.page(c.operator(c.recordCall)))
	mux.HandleFunc("GET /notices", c.page(c.notices))
	mux.HandleFunc("POST /notices/{key}/resend", c.page(c.operator(c.resend)))
	mux.HandleFunc("GET /import", c.page(c.importPage))
	mux.HandleFunc("POST /import", c.page(c.operator(c.importFile)))
	mux.HandleFunc("GET /templates", c.page(c.templates))
	mux.HandleFunc("GET /templates/preview", c.page(c.templatePreview))
	if c.Report != nil {
		mux.HandleFunc("GET /report", c.page(c.reportPage))
		mux.HandleFunc("GET /report.csv", c.page(c.reportCSV))
	}
	mux.HandleFunc("/", c.page(func(w http.ResponseWriter, r *http.Request, ss *session) {
		c.fail(w, r, ss, http.StatusNotFound, "There is no such page: use the menu above.")
	}))
	return headers(mux)
}

func (c *Console) init() {
	c.limits = newLimiter()
	c.pages = map[string]*template.Template{}
	funcs := template.FuncMap{
		"date":     c.date,
		"dateLeft": c.dateLeft,
		"time":     c.time,
		"n": func(p *int) int {
			if p == nil {
				return 0
			}
			return *p
		},
		"join":         strings.Join,
		"outcomeLabel": outcomeLabel,
		"resendable":   resendable,
	}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	entries, _ := fs.ReadDir(templateFS, "templates")
	for _, e := range entries {
		if e.Name() == "layout.html" {
			continue
		}
		t := template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+e.Name()))
		c.pages[strings.TrimSuffix(e.Name(), ".html")] = t
	}
}

// csp is the pages' Content-Security-Policy: scripts and styles from this
// origin only, none inline; frames (the email previews) from this origin;
// the console itself framed by no one.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// previewCSP is an email preview's: it runs nothing, loads nothing but
// inline styles and data images, submits nothing, and only the console's
// own pages may frame it (in a sandboxed iframe).
const previewCSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox"

func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func staticFiles(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		next.ServeHTTP(w, r)
	})
}

// session returns the request's session, or nil.
func (c *Console) session(r *http.Request) (*session, string) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil, ""
	}
	return c.sessions.get(ck.Value, c.Now()), ck.Value
}

type pageFunc func(w http.ResponseWriter, r *http.Request, ss *session)

// page requires a session (else 303 to /login) and, for a POST, the
// session's CSRF token in the form field csrf (else 403).
func (c *Console) page(h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ss, _ := c.session(r)
		if ss == nil {
			if r.Method == http.MethodPost && r.Body != nil {
				r.Body.Close()
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			token, err := c.csrfOf(w, r)
			if r.MultipartForm != nil {
				// Whatever the answer (a refusal included), the upload's
				// temporary files go with the request: they hold the
				// customers' personal data.
				defer func() { _ = r.MultipartForm.RemoveAll() }()
			}
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				c.fail(w, r, ss, http.StatusRequestEntityTooLarge, fmt.Sprintf("The file is larger than %d bytes: split it, or start the server with a larger RENEWALS_MAX_IMPORT_BYTES.", c.MaxImportBytes))
				return
			}
			if !sameToken(token, ss.csrf) {
				c.fail(w, r, ss, http.StatusForbidden, "This form has expired or did not come from the console: go back, reload the page and send it again.")
				return
			}
		}
		h(w, r, ss)
	}
}

// csrfOf reads the csrf field of a URL-encoded or multipart form. A
// multipart body (an import) is bounded by MaxImportBytes and parsed with
// 8 MiB in memory; the rest of a file goes to a temporary file, which page
// removes when the request ends.
func (c *Console) csrfOf(w http.ResponseWriter, r *http.Request) (string, error) {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		r.Body = http.MaxBytesReader(w, r.Body, c.MaxImportBytes+1<<20)
		if err := r.ParseMultipartForm(8 << 20); err != nil {
			return "", err
		}
		if v := r.MultipartForm.Value["csrf"]; len(v) == 1 {
			return v[0], nil
		}
		return "", nil
	}
	if err := r.ParseForm(); err != nil {
		return "", err
	}
	return r.PostForm.Get("csrf"), nil
}

// operator refuses a viewer with 403.
func (c *Console) operator(h pageFunc) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		if ss.role != Operator {
			c.fail(w, r, ss, http.StatusForbidden, "Only an operator can do this: ask one, or sign in as one.")
			return
		}
		h(w, r, ss)
	}
}

// view is what every page's template sees.
type view struct {
	Title  string
	Path   string
	User   string
	Role   Role
	CSRF   string
	Nav    []navItem
	Notice string // a sentence at the top: what just happened
	Error  string
	Data   any
}

type navItem struct {
	Path, Label string
	Current     bool
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, ss *session, status int, name, title string, data any) {
	v := view{Title: title, Path: r.URL.Path, Data: data}
	if ss != nil {
		v.User, v.Role, v.CSRF = ss.user, ss.role, ss.csrf
		for _, n := range nav {
			if n.Path == "/report" && c.Report == nil {
				continue // this server has no renewals report
			}
			cur := n.Path == r.URL.Path || n.Path != "/" && strings.HasPrefix(r.URL.Path, n.Path)
			v.Nav = append(v.Nav, navItem{n.Path, n.Label, cur})
		}
	}
	if d, ok := data.(interface{ flash() (string, string) }); ok {
		v.Notice, v.Error = d.flash()
	}
	var b strings.Builder
	if err := c.pages[name].ExecuteTemplate(&b, "layout", v); err != nil {
		c.Log.Error("console page", zap.String("page", name), zap.Error(err))
		http.Error(w, "the page could not be drawn: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, b.String())
}

type failure struct{ Message string }

func (f failure) flash() (string, string) { return "", f.Message }

func (c *Console) fail(w http.ResponseWriter, r *http.Request, ss *session, status int, msg string) {
	c.render(w, r, ss, status, "error", http.StatusText(status), failure{msg})
}

// date writes a day as 20 Dec 2026.
func (c *Console) date(d subscription.Date) string {
	if d.IsZero() {
		return "—"
	}
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC).Format("2 Jan 2006")
}

// dateLeft writes a day with the days left from today in the reseller's
// zone: "20 Dec 2026 · 19 days left".
func (c *Console) dateLeft(d subscription.Date) string {
	if d.IsZero() {
		return "—"
	}
	return c.date(d) + " · " + daysLeft(c.today().DaysUntil(d))
}

func daysLeft(n int) string {
	switch {
	case n == 0:
		return "today"
	case n == 1:
		return "1 day left"
	case n > 1:
		return itoa(n) + " days left"
	case n == -1:
		return "1 day ago"
	}
	return itoa(-n) + " days ago"
}

// time writes an instant in the reseller's zone: 1 Dec 2026 09:14 GMT.
func (c *Console) time(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(c.Location).Format("2 Jan 2006 15:04 MST")
}

func (c *Console) today() subscription.Date { return subscription.Today(c.Now(), c.loc()) }

func (c *Console) loc() *time.Location { return cmp.Or(c.Location, time.UTC) }
