package render_test

import (
	"bytes"
	"errors"
	"html"
	"io/fs"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"renewals/pkg/mailer"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/templates"
)

var reseller = render.Reseller{
	Name:    "Design Partners Ltd",
	Phone:   "+44 1254 000000",
	Email:   "renewals@partner.example",
	Website: "www.partner.example",
}

func newRenderer(t *testing.T) *render.Renderer {
	t.Helper()
	r, err := render.New(templates.FS, reseller)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func sub(locale string) subscription.Subscription {
	seats, assigned := 25, 21
	return subscription.Subscription{
		ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"),
		CustomerName: "Acme Engineering", CustomerAccount: "5100000001", Product: "Design Suite",
		Seats: &seats, SeatsAssigned: &assigned, AccessModel: subscription.MultiUser,
		Status: subscription.StatusActive, Locale: locale,
		ContractManager: subscription.Contact{Name: "Carla Manager", Email: "cm@acme.example"},
	}
}

func notice(s subscription.Subscription, milestone, daysLeft int) subscription.Notice {
	return subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: s.ID, EndDate: s.EndDate, Milestone: milestone}, DaysLeft: daysLeft}
}

func TestEveryMilestoneAndLocaleRenders(t *testing.T) {
	r := newRenderer(t)
	if err := r.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	dates := map[string]string{"en-GB": "31 March 2027", "en-US": "March 31, 2027"}
	for _, tc := range []struct{ locale, wantLocale string }{
		{"en-GB", "en-GB"}, {"en-US", "en-US"}, {"en_us", "en-US"}, {"fr-FR", "en-GB"}, {"", "en-GB"},
	} {
		for _, m := range []struct {
			milestone, days int
			set, tone       string
		}{
			{90, 88, "90", "Plan ahead"}, {45, 45, "45", "Reminder"}, {30, 1, "30", "Final reminder"}, {60, 59, "generic", "ends in"},
		} {
			s := sub(tc.locale)
			e, err := r.Render(s, notice(s, m.milestone, m.days))
			if err != nil {
				t.Fatalf("%s/%d: %v", tc.locale, m.milestone, err)
			}
			if e.Locale != tc.wantLocale || e.Set != m.set {
				t.Errorf("%s/%d: used %s/%s, want %s/%s", tc.locale, m.milestone, e.Locale, e.Set, tc.wantLocale, m.set)
			}
			if !strings.Contains(e.Subject, m.tone) || strings.ContainsAny(e.Subject, "\r\n") {
				t.Errorf("%s/%d: subject %q, want one line containing %q", tc.locale, m.milestone, e.Subject, m.tone)
			}
			date := dates[e.Locale]
			days := map[bool]string{true: "1 day", false: "days"}[m.days == 1]
			for _, body := range []struct{ kind, s string }{{"text", e.Text}, {"html", html.UnescapeString(e.HTML)}} {
				for _, want := range []string{
					"Acme Engineering", "Design Suite", "110001234567", date, days,
					"25 in total, 21 assigned, 4 unused", "4 unused seats",
					"new starters", "Leavers", "contract manager", "contract manager on the subscription must be changed",
					reseller.Name, reseller.Phone, reseller.Email, reseller.Website, "Carla Manager",
					"110001234567:2027-03-31:" + strconv.Itoa(m.milestone),
				} {
					if !strings.Contains(strings.ToLower(body.s), strings.ToLower(want)) {
						t.Errorf("%s/%d %s body lacks %q:\n%s", tc.locale, m.milestone, body.kind, want, body.s)
					}
				}
			}
			if !strings.Contains(e.HTML, `href="https://www.partner.example"`) {
				t.Errorf("%s/%d: website link missing a scheme", tc.locale, m.milestone)
			}
		}
	}
	us, _ := r.Render(sub("en-US"), notice(sub("en-US"), 45, 45))
	gb, _ := r.Render(sub("en-GB"), notice(sub("en-GB"), 45, 45))
	if !strings.Contains(us.Text, "license") || !strings.Contains(gb.Text, "licence") {
		t.Errorf("spelling: en-US should say license, en-GB licence")
	}
}

func TestUnknownSeatsAndMissingFields(t *testing.T) {
	r := newRenderer(t)
	s := subscription.Subscription{ID: "X1", EndDate: subscription.MustDate("2028-02-29")}
	e, err := r.Render(s, notice(s, 30, 30))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.Text, "Seats:") || !strings.Contains(e.Text, "29 February 2028") || !strings.Contains(e.Text, "Dear contract manager") {
		t.Errorf("text:\n%s", e.Text)
	}
}

func TestHTMLEscapesValues(t *testing.T) {
	r := newRenderer(t)
	s := sub("en-GB")
	s.CustomerName = `<script>alert("x")</script>`
	s.ContractManager.Name = `Bob <b>bold</b> & "quotes"`
	e, err := r.Render(s, notice(s, 90, 90))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.HTML, "<script>") || strings.Contains(e.HTML, "<b>bold") {
		t.Errorf("HTML holds unescaped markup:\n%s", e.HTML)
	}
	if !strings.Contains(e.HTML, "&lt;script&gt;") {
		t.Errorf("HTML lacks the escaped name")
	}
	if !strings.Contains(e.Text, `<script>alert("x")</script>`) {
		t.Errorf("text should hold the name as written")
	}
	bad := render.Reseller{Website: "javascript:alert(1)"}
	r2, err := render.New(templates.FS, bad)
	if err != nil {
		t.Fatal(err)
	}
	e, _ = r2.Render(s, notice(s, 90, 90))
	if strings.Contains(e.HTML, `href="javascript:`) {
		t.Errorf("unsafe URL kept in href")
	}
}

// CR/LF in any field reaches neither the subject line nor a header of the
// composed message.
func TestLineBreaksCannotAddHeaders(t *testing.T) {
	r := newRenderer(t)
	s := sub("en-GB")
	inject := "\r\nBcc: evil@attacker.example\r\nX-Evil: 1\r\n"
	s.Product = "Suite" + inject
	s.CustomerName = "Acme" + inject
	s.ContractManager.Name = "Carla" + inject
	for _, m := range []int{90, 45, 30, 60} {
		e, err := r.Render(s, notice(s, m, m))
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(e.Subject, "\r\n") {
			t.Fatalf("subject has a line break: %q", e.Subject)
		}
		data, err := mailer.Compose("renewals@partner.example", mailer.Message{
			Key: notice(s, m, m).Key, To: s.ContractManager.Email, ToName: s.ContractManager.Name,
			Subject: e.Subject, Text: e.Text, HTML: e.HTML,
		}, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"Bcc", "Cc", "X-Evil"} {
			if _, ok := msg.Header[h]; ok {
				t.Errorf("milestone %d: injected header %s", m, h)
			}
		}
		if to, err := msg.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "cm@acme.example" {
			t.Errorf("To = %v (%v)", to, err)
		}
	}
}

// tree copies the real templates into a MapFS so a test can break one file.
func tree(t *testing.T) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(templates.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(templates.FS, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUnknownVariableFailsAtRender(t *testing.T) {
	fsys := tree(t)
	fsys["en-GB/90.body.html"] = &fstest.MapFile{Data: []byte(`{{define "content"}}<p>{{.NoSuchField}}</p>{{end}}`)}
	fsys["en-GB/45.subject.txt"] = &fstest.MapFile{Data: []byte(`{{.Reseller.Nope}}`)}
	r, err := render.New(fsys, reseller)
	if err != nil {
		t.Fatalf("New: %v (an unknown field is an execution error)", err)
	}
	s := sub("en-GB")
	for _, m := range []int{90, 45} {
		_, err = r.Render(s, notice(s, m, m))
		var ee *render.ExecError
		if !errors.As(err, &ee) || ee.Locale != "en-GB" {
			t.Errorf("milestone %d: err = %v, want *render.ExecError", m, err)
		}
	}
	if !strings.Contains(err.Error(), "en-GB/45.subject.txt") {
		t.Errorf("error %q does not name the file", err)
	}
	if _, err := r.Render(s, notice(s, 30, 30)); err != nil {
		t.Errorf("other sets still render: %v", err)
	}
	if err := r.Check(); err == nil {
		t.Error("Check passed a template with an unknown field")
	}
}

func TestBrokenTemplatesFailNew(t *testing.T) {
	for _, tc := range []struct {
		name, file, data, want string
	}{
		{"bad syntax", "en-US/30.body.txt", `{{define "content"}}{{if .DaysLeft}}{{end}`, "en-US/30.body.txt"},
		{"bad html", "en-GB/generic.body.html", `{{define "content"}}<a href="{{.Product}}{{end}}`, "en-GB/generic.body.html"},
		{"unknown function", "en-GB/90.subject.txt", `{{upper .Product}}`, "en-GB/90.subject.txt"},
		{"broken partials", "partials.txt", `{{define "x"}}`, "partials.txt"},
		{"broken locale words", "en-US/locale.txt", `{{define "licence"}}`, "en-US/locale.txt"},
		{"escaping error in the layout", "layout.html", `{{define "layout"}}<a href="{{.Product}}{{end}}`, "html/template:layout"},
		{"set without html", "en-GB/60.subject.txt", `hi`, "en-GB/60.body.txt is missing"},
		{"stray file", "en-GB/notes.txt", `hi`, "en-GB/notes.txt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := tree(t)
			fsys[tc.file] = &fstest.MapFile{Data: []byte(tc.data)}
			_, err := render.New(fsys, reseller)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	fsys := tree(t)
	delete(fsys, "en-US/generic.body.html")
	if _, err := render.New(fsys, reseller); err == nil || !strings.Contains(err.Error(), "en-US/generic.body.html") {
		t.Errorf("missing generic html: %v", err)
	}
	fsys = fstest.MapFS{}
	for p, f := range tree(t) {
		if !strings.HasPrefix(p, "en-GB/") {
			fsys[p] = f
		}
	}
	if _, err := render.New(fsys, reseller); err == nil || !strings.Contains(err.Error(), "en-GB") {
		t.Errorf("no default locale: %v", err)
	}
	fsys = tree(t)
	delete(fsys, "layout.txt")
	if _, err := render.New(fsys, reseller); err == nil || !strings.Contains(err.Error(), "layout.txt is missing") {
		t.Errorf("missing shared layout: %v", err)
	}
}

func TestEmptySubjectFailsAtRender(t *testing.T) {
	fsys := tree(t)
	fsys["en-GB/90.subject.txt"] = &fstest.MapFile{Data: []byte("{{if .HasSeats}}{{end}} \r\n")}
	r, err := render.New(fsys, reseller)
	if err != nil {
		t.Fatal(err)
	}
	s := sub("en-GB")
	_, err = r.Render(s, notice(s, 90, 90))
	var ee *render.ExecError
	if !errors.As(err, &ee) || ee.File != "en-GB/90.subject.txt" || !strings.Contains(err.Error(), "empty") {
		t.Errorf("err = %v, want an *render.ExecError for an empty subject", err)
	}
}

// TestRenderConcurrently: renders running at once, which share the pool of
// buffers they execute into, each return their own notice's email.
func TestRenderConcurrently(t *testing.T) {
	r := newRenderer(t)
	want := map[int]render.Email{}
	subs := map[int]subscription.Subscription{}
	for _, days := range []int{90, 45, 30, 60, -14} {
		s := sub([]string{"en-GB", "en-US"}[len(want)%2])
		s.ID = "11000123456" + strconv.Itoa(len(want))
		e, err := r.Render(s, notice(s, days, days))
		if err != nil {
			t.Fatal(err)
		}
		want[days], subs[days] = e, s
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				for days, w := range want {
					s := subs[days]
					if e, err := r.Render(s, notice(s, days, days)); err != nil || e != w {
						t.Errorf("render %s/%d concurrently: %v, another email than alone", s.ID, days, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
