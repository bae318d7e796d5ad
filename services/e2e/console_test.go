package e2e_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"renewals/services/e2e"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// consolePost posts body to path with the session cookie and no CSRF
// token beyond what body holds; it returns the status and the body.
func consolePost(t *testing.T, s *e2e.Server, session, path, contentType string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+path, body)
	req.Header.Set("Content-Type", contentType)
	if session != "" {
		req.AddCookie(&http.Cookie{Name: "renewals_session", Value: session})
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consoleUser is a signed-in HTTP client of the console.
type consoleUser struct {
	c    *http.Client
	base string
	csrf string
}

// signIn signs in through the form, with the token or a name and
// password, and returns the answer to the sign-in.
func signIn(t testing.TB, s *e2e.Server, form url.Values, header http.Header) (*consoleUser, *http.Response) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: noRedirect.CheckRedirect}
	resp, err := c.Get(s.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(b)
	if m == nil {
		t.Fatalf("the sign-in page has no CSRF field:\n%s", b)
	}
	form.Set("csrf", string(m[1]))
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u := &consoleUser{c: c, base: s.URL}
	if resp.StatusCode == http.StatusSeeOther {
		_, page := u.get(t, "/")
		if m := csrfField.FindStringSubmatch(page); m != nil {
			u.csrf = m[1]
		}
	}
	return u, resp
}

func (u *consoleUser) get(t testing.TB, path string) (*http.Response, string) {
	t.Helper()
	resp, err := u.c.Get(u.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (u *consoleUser) post(t *testing.T, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := u.c.PostForm(u.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (u *consoleUser) upload(t *testing.T, name, data string) (*http.Response, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("csrf", u.csrf)
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write([]byte(data))
	mw.Close()
	resp, err := u.c.Post(u.base+"/import", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// consolePages are every page of the console, with a query where it has one.
var consolePages = []string{
	"/", "/calllist", "/calllist?rep=Sam&min_days=0&max_days=60&as_of=2026-12-01", "/calllist.csv",
	"/subscriptions", "/subscriptions?q=Revit", "/subscriptions/110001000006", "/subscriptions/110001000006/preview/30",
	"/notices", "/notices?from=2026-11-01&to=2027-03-31&outcome=sent", "/import", "/templates",
	"/templates?subscription_id=110001000006&milestone=30&locale=en-US", "/templates/preview?milestone=90",
	"/report", "/report?from=2026-10&to=2027-03", "/report.csv?from=2026-10&to=2027-03", "/no-such-page",
}

// TestConsoleAccess holds the console to its access rules without a
// browser: every page without a session redirects to sign-in and every
// endpoint answers 303 or 401; a viewer reads but cannot import or erase;
// sign-in failures are bounded; the cookie and the headers are safe.
func TestConsoleAccess(t *testing.T) {
	t.Parallel()
	s := e2e.Start(t, e2e.Options{})
	importSample(t, s)

	for _, p := range consolePages {
		resp, err := noRedirect.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s without a session: %d to %q, want 303 to /login", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, p := range []string{"/import", "/logout", "/subscriptions/110001000006/erase"} {
		if code, _ := consolePost(t, s, "", p, "application/x-www-form-urlencoded", strings.NewReader("confirm=110001000006")); code != http.StatusSeeOther {
			t.Errorf("POST %s without a session: %d, want 303", p, code)
		}
	}
	if resp, err := noRedirect.Get(s.URL + "/events"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /events without a session: %v %v, want 401", resp.StatusCode, err)
	}
	if code, _ := consolePost(t, s, "forged-session-value", "/import", "application/x-www-form-urlencoded", nil); code != http.StatusSeeOther {
		t.Errorf("POST /import with a made-up session: %d, want 303", code)
	}

	// The token signs in as an operator; every page then answers.
	op, resp := signIn(t, s, url.Values{"token": {s.Token(t)}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in with the token: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"renewals_session=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Errorf("session cookie %q lacks %s", ck, want)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Errorf("session cookie %q is Secure over plain HTTP: the browser would drop it", ck)
	}
	for _, p := range consolePages {
		resp, body := op.get(t, p)
		want := http.StatusOK
		if p == "/no-such-page" {
			want = http.StatusNotFound
		}
		if resp.StatusCode != want {
			t.Errorf("GET %s as operator: %d, want %d\n%.300s", p, resp.StatusCode, want, body)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if strings.Contains(p, "preview") {
			if !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
				t.Errorf("GET %s: email preview CSP %q, want a sandbox that runs nothing", p, csp)
			}
		} else if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q, want scripts from the console only and frame-ancestors 'none'", p, csp)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
			t.Errorf("GET %s: the page has inline script", p)
		}
		// Every form that changes something posts a CSRF token; the
		// filters are GET forms, which change nothing and keep the token
		// out of URLs.
		if posts := strings.Count(body, `method="post"`); posts != strings.Count(body, `name="csrf"`) || posts == 0 && !strings.Contains(p, ".csv") && !strings.Contains(p, "preview") {
			t.Errorf("GET %s: %d forms that post, %d CSRF fields", p, posts, strings.Count(body, `name="csrf"`))
		}
	}
	_, page := op.get(t, "/subscriptions/110001000006")
	if !strings.Contains(page, "dafydd.evans@bowland-surveys.example") || !strings.Contains(page, "20 Dec 2026 · ") {
		t.Errorf("the subscription page does not show the contract manager's email and the end date as 20 Dec 2026 with days left")
	}
	for _, p := range []string{"/", "/calllist", "/subscriptions", "/notices?from=2026-11-01&to=2027-03-31"} {
		_, page := op.get(t, p)
		for _, href := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(page, -1) {
			if strings.Contains(href[1], "@") && !strings.HasPrefix(href[1], "mailto:") {
				t.Errorf("%s links to %q: an email in a URL", p, href[1])
			}
		}
	}

	if resp, body := op.get(t, "/subscriptions?q=dafydd.evans%40bowland-surveys.example"); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, "email addresses are not searched") || strings.Contains(body, "dafydd.evans@") {
		t.Errorf("a search for an email: %d, want 400 with a sentence and the address not echoed", resp.StatusCode)
	}

	// A viewer reads, and cannot import or erase.
	if r := s.CLIInput(t, "correct horse battery\n", "user", "add", "viewer1", "--role", "viewer"); r.Code != 0 {
		t.Fatalf("renewals user add: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	viewer, resp := signIn(t, s, url.Values{"username": {"viewer1"}, "password": {"correct horse battery"}}, http.Header{"X-Forwarded-Proto": {"https"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("viewer sign-in: %d, want 303", resp.StatusCode)
	}
	if ck := resp.Header.Get("Set-Cookie"); !strings.Contains(ck, "Secure") {
		t.Errorf("behind HTTPS (X-Forwarded-Proto) the session cookie %q is not Secure", ck)
	}
	// The cookie jar keeps a Secure cookie for https only: pass it by hand.
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == "renewals_session" {
			session = c.Value
		}
	}
	viewer.c.Jar, _ = cookiejar.New(nil)
	u, _ := url.Parse(s.URL)
	viewer.c.Jar.SetCookies(u, []*http.Cookie{{Name: "renewals_session", Value: session}})
	if resp, _ := viewer.get(t, "/calllist"); resp.StatusCode != http.StatusOK {
		t.Errorf("viewer GET /calllist: %d, want 200", resp.StatusCode)
	}
	_, page = viewer.get(t, "/")
	viewer.csrf = csrfField.FindStringSubmatch(page)[1]
	if resp, body := viewer.upload(t, "more.csv", "subscription_id,end_date\n110001000100,2027-06-30\n"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Only an operator") {
		t.Errorf("viewer import: %d, want 403 with a sentence", resp.StatusCode)
	}
	if resp, _ := viewer.post(t, "/subscriptions/110001000006/erase", url.Values{"csrf": {viewer.csrf}, "confirm": {"110001000006"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer erase: %d, want 403", resp.StatusCode)
	}
	if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/110001000006", nil, nil); code != http.StatusOK {
		t.Errorf("after the viewer's erase the subscription answers %d, want 200: still there", code)
	}

	// An operator imports and erases through the console.
	if resp, body := op.upload(t, "more.csv", "subscription_id,end_date\n110001000100,2027-06-30\n"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Every row was stored") {
		t.Errorf("operator import: %d\n%.400s", resp.StatusCode, body)
	}
	if resp, body := op.post(t, "/subscriptions/110001000100/erase", url.Values{"csrf": {op.csrf}, "confirm": {"110001000100"}}); resp.StatusCode != http.StatusOK || !strings.Contains(body, "erased") {
		t.Errorf("operator erase: %d\n%.400s", resp.StatusCode, body)
	}
	if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/110001000100", nil, nil); code != http.StatusNotFound {
		t.Errorf("after the erase the subscription answers %d, want 404", code)
	}

	// Sign-out ends the session on the server.
	if resp, _ := op.post(t, "/logout", url.Values{"csrf": {op.csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d, want 303", resp.StatusCode)
	}
	if resp, _ := op.get(t, "/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out GET /: %d, want 303", resp.StatusCode)
	}

	// Failed sign-ins are bounded: after ten a minute from one address,
	// even the right token is refused for now.
	for i := range 10 {
		if _, resp := signIn(t, s, url.Values{"token": {"wrong"}}, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	if _, resp := signIn(t, s, url.Values{"token": {s.Token(t)}}, nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("sign-in after ten failures in a minute: %d, want 429", resp.StatusCode)
	}
}
