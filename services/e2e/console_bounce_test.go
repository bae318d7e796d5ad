package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consoleSession signs in to the console with the API token and returns a
// client that keeps the session and does not follow redirects, and the
// session's CSRF token.
func consoleSession(t *testing.T, s *Server) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	_, page := consoleGet(t, c, s.URL+"/login")
	m := consoleCSRF.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the sign-in page has no CSRF field")
	}
	resp, err := c.PostForm(s.URL+"/login", url.Values{"csrf": {m[1]}, "token": {s.Token(t)}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console sign-in: %d, want 303", resp.StatusCode)
	}
	_, page = consoleGet(t, c, s.URL+"/")
	if m = consoleCSRF.FindStringSubmatch(page); m == nil {
		t.Fatalf("the overview has no CSRF field")
	}
	return c, m[1]
}

func consoleGet(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestConsoleBouncedNotice follows a bounced notice through the console: the
// subscription's timeline shows it bounced with its status and a Resend
// button, the notices page filters on bounced, and the button resends
// through the API's resend: refused with its sentence while the address is
// the one that bounced, queued (and then sent, once) after it changed.
func TestConsoleBouncedNotice(t *testing.T) {
	t.Parallel()
	relay := testenv.SMTP(t)
	const domain = "bounces.reseller.example"
	bounceAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	s := Start(t, Options{Env: map[string]string{
		"RENEWALS_SMTP_URL": relay.URL(), "RENEWALS_MAIL_FROM": "renewals@reseller.example",
		"RENEWALS_BOUNCE_DOMAIN": domain, "RENEWALS_BOUNCE_LISTEN": bounceAddr, "RENEWALS_BOUNCE_SECRET": "e2e-bounce-secret-0123456789abcdef",
	}})
	today := subscription.Today(time.Now(), time.UTC)
	const cmOld, cmNew = "jo.bloggs@customer.example", "jo.b@customer.example"
	rows := []row{{id: "300000000001", customer: "Bloggs plc", product: "AutoCAD", end: today.AddDays(50), seats: "3", assigned: "3", status: "active",
		cmName: "Jo Bloggs", cmEmail: cmOld, cmTel: "+44 1254 000301", rep: "Sam"}}
	if r := s.CLI(t, "import", writePortfolio(t, rows)); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.CLI(t, "run", "--as-of", today.String(), "--wait"); r.Code != 0 {
		t.Fatalf("run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	sent := relay.WaitFor(1, 30*time.Second)
	k90 := subscription.NoticeKey{SubscriptionID: "300000000001", EndDate: today.AddDays(50), Milestone: 90}
	if err := testenv.Deliver(t, bounceAddr, sent[0].From, postfixDSN(sent[0].From, cmOld, sent[0].Data)); err != nil {
		t.Fatalf("deliver the DSN: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "the ledger to show the notice bounced", func() bool {
		return ledgerEntry(t, s, k90).Outcome == subscription.OutcomeBounced
	})

	c, csrf := consoleSession(t, s)
	page := "/subscriptions/300000000001"
	_, body := consoleGet(t, c, s.URL+page)
	action := `action="/notices/` + k90.String() + `/resend"`
	if !strings.Contains(body, `<span class="badge bounced">bounced</span>`) || !strings.Contains(body, "status 5.1.1") || !strings.Contains(body, action) {
		t.Fatalf("the subscription page does not show the 90-day notice bounced with status 5.1.1 and a Resend button:\n%s", body)
	}
	_, body = consoleGet(t, c, s.URL+"/notices?outcome=bounced")
	if !strings.Contains(body, `<option value="bounced" selected>`) || strings.Count(body, `<span class="badge bounced">bounced</span>`) != 1 {
		t.Errorf("the notices page filtered on bounced does not list the one bounced notice")
	}

	resend := func() string {
		t.Helper()
		resp, err := c.PostForm(s.URL+"/notices/"+k90.String()+"/resend", url.Values{"csrf": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page+"#notices" {
			t.Fatalf("console resend: %d to %q, want 303 to %s#notices", resp.StatusCode, resp.Header.Get("Location"), page)
		}
		_, body := consoleGet(t, c, s.URL+page)
		return body
	}
	// The address is the one that bounced: the API's sentence, nothing queued.
	if body := resend(); !strings.Contains(body, `class="flash bad"`) || !strings.Contains(body, "has not changed") {
		t.Errorf("a resend to the address that bounced: want the refusal on the page")
	}
	if e := ledgerEntry(t, s, k90); e.Outcome != subscription.OutcomeBounced {
		t.Errorf("after the refused resend the notice is %+v, want still bounced", e)
	}
	rows[0].cmEmail = cmNew
	if r := s.CLI(t, "import", writePortfolio(t, rows)); r.Code != 0 {
		t.Fatalf("re-import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if body := resend(); !strings.Contains(body, `class="flash ok"`) || !strings.Contains(body, "queued to go again") {
		t.Errorf("a resend after the address changed: want the notice queued")
	}
	testenv.Eventually(t, 30*time.Second, "the resent notice to be sent", func() bool {
		return ledgerEntry(t, s, k90).Outcome == subscription.OutcomeSent
	})
	n := 0
	for _, m := range relay.Messages() {
		if slices.Contains(m.To, cmNew) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d messages to the new address, want 1", n)
	}
	// Once sent, the notice has no Resend button.
	if _, body := consoleGet(t, c, s.URL+page); strings.Contains(body, action) {
		t.Errorf("the sent notice still offers Resend")
	}
	for _, pd := range []string{cmOld, cmNew, "Jo Bloggs"} {
		if strings.Contains(s.Logs(), pd) {
			t.Errorf("the server's log holds %q", pd)
		}
	}
}
