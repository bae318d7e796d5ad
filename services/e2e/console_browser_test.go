package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"renewals/services/e2e"
)

// The pinned axe-core (see testdata/AXE.md).
const (
	axeFile   = "testdata/axe-4.14.1.min.js"
	axeSHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
)

// screenshotsEnv names the folder the browser tests write their
// screenshots into (the README uses docs/screenshots; a relative folder is
// the repository's); unset, they go to a temporary folder that the test
// removes.
const screenshotsEnv = "CONSOLE_SCREENSHOTS"

// chromiumPath returns Debian's Chromium. Without it the browser tests
// skip, except under CI (CI=true), where .ci/run installs it: there its
// absence fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: .ci/run installs it (apt-get install chromium); the browser tests must run in CI")
	}
	t.Skip("chromium is not installed, so the console's browser tests skip: apt-get install chromium to run them")
	return ""
}

// browser starts headless Chromium with a fresh profile, as root can run
// it, and returns a tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if _, err := chromedp.Run(ctx, chromedp.Location()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a deadline.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(steps...))
}

// get runs one browser action with a deadline and returns its value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	if err != nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(lctx, chromedp.Location())
		text, _ := chromedp.Run(lctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v (at %s, showing %.600q)", what, err, loc, text)
	}
	return v
}

// auditor injects axe-core into pages and takes their screenshots.
type auditor struct {
	axe []byte
	dir string
}

func newAuditor(t *testing.T) *auditor {
	t.Helper()
	src, err := os.ReadFile(axeFile)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(src); hex.EncodeToString(sum[:]) != axeSHA256 {
		t.Fatalf("%s is not the pinned axe-core 4.14.1 (SHA-256 %x)", axeFile, sum)
	}
	dir := os.Getenv(screenshotsEnv)
	if dir != "" && !filepath.IsAbs(dir) {
		// A relative folder is the repository's (go test runs in the
		// package's folder).
		dir = filepath.Join("..", "..", dir)
	}
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &auditor{axe: src, dir: dir}
}

// check runs axe-core on the page in the tab and fails on any serious or
// critical violation.
func (a *auditor) check(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	script := `axe.run(document).then(r => ({passes: r.passes.length, found: r.violations
		.filter(v => v.impact === "serious" || v.impact === "critical")
		.map(v => v.impact + " " + v.id + ": " + v.help + " at " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(", "))}))`
	type result struct {
		Passes int      `json:"passes"`
		Found  []string `json:"found"`
	}
	get(t, ctx, "inject axe-core into "+name, chromedp.Evaluate[bool](string(a.axe)+"\n;true"))
	res := get(t, ctx, "axe on "+name, chromedp.Evaluate[result](script, chromedp.EvalAwaitPromise))
	if res.Passes == 0 {
		t.Errorf("%s: axe-core passed no rule: it did not look at the page", name)
	}
	for _, f := range res.Found {
		t.Errorf("%s: %s", name, f)
	}
}

// shoot writes full-page screenshots of path at 1280 and 390 px wide, and
// checks each width with axe-core. A page wider than the window fails: at
// phone width nothing may overflow sideways.
func (a *auditor) shoot(t *testing.T, ctx context.Context, name, url string) {
	t.Helper()
	for _, width := range []int64{1280, 390} {
		what := fmt.Sprintf("%s at %d px", name, width)
		opts := []chromedp.EmulateViewportOption{}
		if width < 500 {
			opts = append(opts, chromedp.EmulateMobile)
		}
		do(t, ctx, what, chromedp.EmulateViewport(width, 900, opts...), chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("main")))
		scrollW := get(t, ctx, what, chromedp.Evaluate[int64](`document.documentElement.scrollWidth`))
		clientW := get(t, ctx, what, chromedp.Evaluate[int64](`document.documentElement.clientWidth`))
		if scrollW > clientW {
			t.Errorf("%s at %d px: the page is %d px wide, wider than the window (%d px)", name, width, scrollW, clientW)
		}
		a.check(t, ctx, fmt.Sprintf("%s at %d px", name, width))
		png := get(t, ctx, "screenshot "+what, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(a.dir, fmt.Sprintf("%s-%d.png", name, width)), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do(t, ctx, "back to laptop width", chromedp.EmulateViewport(1280, 900))
}

// consoleCSV is the sample with one bad row appended, at line 15: a
// status the service does not know.
func consoleCSV(t *testing.T) string {
	t.Helper()
	sample, err := os.ReadFile(samplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	bad := "110001000099,5150099,Ogden Reservoir Works,AutoCAD,1,1,single-user,annual,2026-01-01,2026-12-31,frozen,Kim Lowe,kim.lowe@ogden.example,+44 1254 000199,,,,Europe/London,en-GB,Sam\n"
	path := filepath.Join(t.TempDir(), "export.csv")
	if err := os.WriteFile(path, append(sample, bad...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The sample's call list as of 2026-12-01, after that day's pass: first
// the unreachable (0007, no contract manager email), then the lapsed
// (0012, ended 20 Nov), then the rest by days left: 0006 (19), 0005 (30),
// 0004 (35), 0003 (45), 0013 (52), 0008 (62), 0002 (75), 0001 (90). 0009
// (renewal in progress), 0010 (cancelled) and 0011 (211 days) are not on
// it.
var sampleCalllist = []string{
	"110001000007", "110001000012", "110001000006", "110001000005", "110001000004",
	"110001000003", "110001000013", "110001000008", "110001000002", "110001000001",
}

// TestConsoleInBrowser drives the console in headless Chromium as the
// renewals lead would: sign in with the token, import the month's export
// with a bad row, watch the overview while a pass runs, read the call list,
// open a subscription, sign out. Every page is checked with axe-core and
// photographed at laptop and phone width.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	aud := newAuditor(t)
	s := e2e.Start(t, e2e.Options{})
	token := s.Token(t)

	// Without a session the console sends the browser to sign in.
	do(t, ctx, "open the console", chromedp.Navigate(s.URL+"/calllist"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := get(t, ctx, "where", chromedp.Location()); loc != s.URL+"/login" {
		t.Fatalf("without a session /calllist led to %s, want %s/login", loc, s.URL)
	}
	aud.shoot(t, ctx, "login", s.URL+"/login")

	// Sign in with the API token.
	do(t, ctx, "sign in with the token",
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#h-pass")),
	)
	if h1, loc := get(t, ctx, "heading", chromedp.Text(chromedp.CSS("h1"))), get(t, ctx, "where", chromedp.Location()); h1 != "Overview" || loc != s.URL+"/" {
		t.Fatalf("after signing in: %q at %s, want the overview at /", h1, loc)
	}

	// Import the export with its bad row: the report names line 15 and why.
	do(t, ctx, "import a file",
		chromedp.Navigate(s.URL+"/import"),
		chromedp.WaitVisible(chromedp.CSS("#file")),
		chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{consoleCSV(t)}),
		chromedp.Submit(chromedp.CSS("#file")),
		chromedp.WaitVisible(chromedp.CSS("#rejections")),
	)
	report := get(t, ctx, "the report", chromedp.Text(chromedp.CSS("#report .figures")))
	rejections := get(t, ctx, "the rejected rows", chromedp.Text(chromedp.CSS("#rejections tbody")))
	for _, want := range []string{"Rows\n14", "Created\n13", "Rejected\n1"} {
		if !strings.Contains(report, want) {
			t.Errorf("import report %q does not show %q", report, want)
		}
	}
	if !regexp.MustCompile(`^15\s+110001000099\s+status\s+`).MatchString(rejections) || !strings.Contains(rejections, "frozen") {
		t.Errorf("rejected rows %q: want line 15, subscription 110001000099, status and why", rejections)
	}
	aud.check(t, ctx, "import report")
	png := get(t, ctx, "screenshot the import report", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(aud.dir, "import-report-1280.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// A live event reaches the overview within 2 s of `renewals run`.
	do(t, ctx, "open the overview", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#feed[data-state="open"]`)))
	started := time.Now()
	r := s.CLI(t, "run", "--as-of", "2026-12-01", "--wait")
	if r.Code != 0 || !strings.Contains(r.Stdout, "8 sent") {
		t.Fatalf("renewals run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	ran := time.Since(started)
	// The browser waits for the feed to change (a mutation observer), up
	// to 2 s.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	first, err := chromedp.Run(pctx, chromedp.Poll[string](
		`([...document.querySelectorAll("#feed li")].find(li => li.textContent.includes("notice.sent")) || {textContent: ""}).textContent`,
		chromedp.WithPollingMutation(), chromedp.WithPollingTimeout(2*time.Second)))
	cancel()
	if err != nil || first == "" {
		t.Errorf("no notice.sent event on the overview within 2s after renewals run (which took %v): %v", ran, err)
	}
	t.Logf("renewals run took %v; live event %q on the overview %v after it returned", ran, first, time.Since(started)-ran)

	// The call list, in rank order, as the API ranks it.
	do(t, ctx, "the call list", chromedp.Navigate(s.URL+"/calllist?as_of=2026-12-01"), chromedp.WaitVisible(chromedp.CSS("#calllist")))
	ids := get(t, ctx, "the call list's rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#calllist tbody tr")].map(r => r.dataset.subscription)`))
	if !slices.Equal(ids, sampleCalllist) {
		t.Errorf("call list order %v, want %v", ids, sampleCalllist)
	}
	var api struct {
		Entries []struct {
			ID string `json:"subscription_id"`
		} `json:"entries"`
	}
	s.API(t, http.MethodGet, "/api/v1/calllist?as_of=2026-12-01", nil, &api)
	var apiIDs []string
	for _, e := range api.Entries {
		apiIDs = append(apiIDs, e.ID)
	}
	if !slices.Equal(ids, apiIDs) {
		t.Errorf("console call list %v, API %v: want the same ranking", ids, apiIDs)
	}

	// Open a subscription from the call list: its 30-day notice was sent.
	do(t, ctx, "open a subscription",
		chromedp.Click(chromedp.CSS(`#calllist a[href="/subscriptions/110001000006"]`)),
		chromedp.WaitVisible(chromedp.CSS("#timeline")),
	)
	timeline := get(t, ctx, "the notices", chromedp.Text(chromedp.CSS("#timeline")))
	if loc := get(t, ctx, "where", chromedp.Location()); loc != s.URL+"/subscriptions/110001000006" || !strings.Contains(timeline, "sent") ||
		!strings.Contains(timeline, "30-day notice") || !strings.Contains(timeline, "contract manager") {
		t.Errorf("subscription page at %s shows %q, want its 30-day notice sent to the contract manager", loc, timeline)
	}

	// An operator records a call from the subscription's page. A callback
	// without its date is refused with one sentence, and the note typed
	// stays in the form; with the date, the call is listed.
	const callNote = "Asked to ring back after the budget meeting"
	callback := time.Now().AddDate(0, 0, 14)
	do(t, ctx, "record a callback without its date",
		chromedp.WaitVisible(chromedp.CSS("#call-outcome")),
		chromedp.SetValue(chromedp.CSS("#call-outcome"), "callback"),
		chromedp.SendKeys(chromedp.CSS("#call-note"), callNote),
		chromedp.Click(chromedp.CSS(`#calls button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash.bad")),
	)
	if msg, kept, outcome := get(t, ctx, "the refusal", chromedp.Text(chromedp.CSS(".flash.bad"))),
		get(t, ctx, "the note kept", chromedp.Evaluate[string](`document.querySelector("#call-note").value`)),
		get(t, ctx, "the outcome kept", chromedp.Evaluate[string](`document.querySelector("#call-outcome").value`)); !strings.Contains(msg, "callback needs its date") || kept != callNote || outcome != "callback" {
		t.Errorf("a callback without a date: %q, note %q, outcome %q; want a sentence asking for the date and the typed note and outcome kept", msg, kept, outcome)
	}
	if loc := get(t, ctx, "where", chromedp.Location()); strings.Contains(loc, "budget") || strings.Contains(loc, "?") {
		t.Errorf("after the refused call the browser is at %s: what was typed is in the URL", loc)
	}
	do(t, ctx, "record a callback",
		chromedp.SetValue(chromedp.CSS("#call-callback"), callback.Format("2006-01-02")),
		chromedp.Click(chromedp.CSS(`#calls button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#call-list")),
	)
	calls := get(t, ctx, "the calls", chromedp.Text(chromedp.CSS("#call-list tbody")))
	if notice := get(t, ctx, "the notice", chromedp.Text(chromedp.CSS(".flash.ok"))); !strings.Contains(notice, "call is recorded") ||
		!strings.Contains(calls, "Call back later") || !strings.Contains(calls, callback.Format("2 Jan 2006")) ||
		!strings.Contains(calls, callNote) || !strings.Contains(calls, "API token") {
		t.Errorf("after recording a callback: flash %q, calls %q; want it listed with its date, caller and note", notice, calls)
	}
	var apiCalls struct {
		Count int `json:"count"`
		Calls []struct {
			Outcome    string `json:"outcome"`
			CallbackOn string `json:"callback_on"`
		} `json:"calls"`
	}
	s.API(t, http.MethodGet, "/api/v1/subscriptions/110001000006/calls", nil, &apiCalls)
	if apiCalls.Count != 1 || apiCalls.Calls[0].Outcome != "callback" || apiCalls.Calls[0].CallbackOn != callback.Format("2006-01-02") {
		t.Errorf("the API lists %+v, want the one callback call", apiCalls)
	}

	// The call list shows a call's outcome: a no_answer on the first entry
	// keeps it on the list with its last call; the pending callback takes
	// 110001000006 off the list until its day.
	do(t, ctx, "record a no_answer",
		chromedp.Navigate(s.URL+"/subscriptions/"+sampleCalllist[0]),
		chromedp.WaitVisible(chromedp.CSS("#call-outcome")),
		chromedp.SetValue(chromedp.CSS("#call-outcome"), "no_answer"),
		chromedp.Click(chromedp.CSS(`#calls button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#call-list")),
	)
	var last string
	var listed []string
	for deadline := time.Now().Add(15 * time.Second); ; {
		do(t, ctx, "the call list after the calls", chromedp.Navigate(s.URL+"/calllist?as_of=2026-12-01"), chromedp.WaitVisible(chromedp.CSS("#calllist")))
		listed = get(t, ctx, "the call list's rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#calllist tbody tr")].map(r => r.dataset.subscription)`))
		last = get(t, ctx, "the last call", chromedp.Evaluate[string](`(document.querySelector('#calllist tr[data-subscription="`+sampleCalllist[0]+`"] td[data-label="Last call"]') || {textContent: ""}).textContent`))
		if strings.Contains(last, "No answer") && !slices.Contains(listed, "110001000006") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // poll with a deadline: the list follows the call's event
	}
	if !strings.Contains(last, "No answer") || !strings.Contains(last, "Record a call") || slices.Contains(listed, "110001000006") {
		t.Errorf("call list after the calls: %v, last call of %s %q; want No answer with a link to record a call, and 110001000006 off the list until its callback", listed, sampleCalllist[0], last)
	}
	if href := get(t, ctx, "the record-a-call link", chromedp.Evaluate[string](`document.querySelector('#calllist tr[data-subscription="`+sampleCalllist[0]+`"] td[data-label="Last call"] a').getAttribute("href")`)); href != "/subscriptions/"+sampleCalllist[0]+"#h-record" {
		t.Errorf("the call list's record-a-call link is %q", href)
	}

	// The ledger over a range of end dates, by outcome: the pass's eight
	// sent notices and its one undeliverable.
	for outcome, want := range map[string]int{"sent": 8, "undeliverable": 1} {
		do(t, ctx, "the notices", chromedp.Navigate(s.URL+"/notices?from=2026-11-01&to=2027-03-31&outcome="+outcome), chromedp.WaitVisible(chromedp.CSS("#notices")))
		if n := get(t, ctx, "count the notices", chromedp.Evaluate[int](`document.querySelectorAll("#notices tbody tr").length`)); n != want {
			t.Errorf("notices page, outcome %s: %d rows, want %d", outcome, n, want)
		}
	}

	// The undeliverable notice's subscription has no contract manager
	// email: no Resend button (the resend would be refused), a sentence
	// saying what to do instead.
	do(t, ctx, "the undeliverable notice", chromedp.Navigate(s.URL+"/notices?from=2026-11-01&to=2027-03-31&outcome=undeliverable"), chromedp.WaitVisible(chromedp.CSS("#notices")))
	undeliverable := get(t, ctx, "the undeliverable notice's subscription", chromedp.Evaluate[string](`document.querySelector("#notices tbody a").getAttribute("href")`))
	do(t, ctx, "open the undeliverable notice's subscription", chromedp.Navigate(s.URL+undeliverable), chromedp.WaitVisible(chromedp.CSS("#timeline")))
	if n, tl := get(t, ctx, "the Resend buttons", chromedp.Evaluate[int](`document.querySelectorAll('#timeline form[action$="/resend"] button').length`)),
		get(t, ctx, "the timeline", chromedp.Text(chromedp.CSS("#timeline"))); n != 0 || !strings.Contains(tl, "To resend it, give the contract manager an email") {
		t.Errorf("%s: %d Resend buttons and %q, want none and how to resend", undeliverable, n, tl)
	}

	// Every page, checked and photographed at both widths.
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"calllist", "/calllist?as_of=2026-12-01"},
		{"subscriptions", "/subscriptions"},
		{"subscription", "/subscriptions/110001000006"},
		{"subscription-undeliverable", undeliverable},
		{"notices", "/notices"},
		{"import", "/import"},
		{"templates", "/templates?subscription_id=110001000008&milestone=90"},
		{"report", "/report?from=2026-10&to=2027-03"},
		{"not-found", "/subscriptions/110009999999"},
	} {
		aud.shoot(t, ctx, p.name, s.URL+p.path)
	}

	// A form posted without its CSRF token is refused, with the session.
	cookies := get(t, ctx, "read the cookies", chromedp.Action[network.GetCookiesResult](func(ctx context.Context, _ *chromedp.Target) (network.GetCookiesResult, error) {
		return chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{s.URL}})
	})).Cookies
	session := ""
	for _, c := range cookies {
		if c.Name == "renewals_session" {
			session = c.Value
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("session cookie HttpOnly=%v SameSite=%v, want HttpOnly and Strict", c.HTTPOnly, c.SameSite)
			}
		}
	}
	if session == "" {
		t.Fatalf("no renewals_session cookie in the browser: %v", cookies)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "more.csv")
	fw.Write([]byte("subscription_id,end_date\n110001000100,2027-06-30\n"))
	mw.Close()
	if code, _ := consolePost(t, s, session, "/import", mw.FormDataContentType(), &body); code != http.StatusForbidden {
		t.Errorf("an import without its CSRF token answered %d, want 403", code)
	}
	if code, _ := consolePost(t, s, session, "/logout", "application/x-www-form-urlencoded", strings.NewReader("")); code != http.StatusForbidden {
		t.Errorf("a sign-out without its CSRF token answered %d, want 403", code)
	}
	if code, _ := consolePost(t, s, session, "/subscriptions/110001000006/calls", "application/x-www-form-urlencoded", strings.NewReader("outcome=no_answer")); code != http.StatusForbidden {
		t.Errorf("a call without its CSRF token answered %d, want 403", code)
	}
	s.API(t, http.MethodGet, "/api/v1/subscriptions/110001000006/calls", nil, &apiCalls)
	if apiCalls.Count != 1 {
		t.Errorf("after a call posted without a CSRF token the API lists %d calls, want 1: nothing recorded", apiCalls.Count)
	}
	if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/110001000100", nil, nil); code != http.StatusNotFound {
		t.Errorf("after the import without a CSRF token the API answers %d for its row, want 404: nothing stored", code)
	}

	// Sign out: the old cookie no longer opens a page.
	do(t, ctx, "sign out", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(chromedp.CSS(".signout button")),
		chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := get(t, ctx, "where", chromedp.Location()); loc != s.URL+"/login" {
		t.Errorf("after sign-out at %s, want /login", loc)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: "renewals_session", Value: session})
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("the signed-out cookie got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, pd := range []string{"amira.khan@pennine-structures.example", "Dafydd Evans", "+44 1254 000106", callNote} {
		if strings.Contains(s.Logs(), pd) {
			t.Errorf("the server's log holds %q", pd)
		}
	}
}
