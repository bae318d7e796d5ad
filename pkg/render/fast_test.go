package render

import (
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"renewals/pkg/subscription"
	"renewals/templates"
)

// The fast path must give what text/template and html/template give, byte
// for byte. These tests render with both, for the shipped templates and for a
// set that exercises every construct the compiler supports, over random and
// adversarial data.

// nasty are pieces of strings that escapers, comparisons and the clean-ups
// treat specially.
var nasty = []string{
	"", " ", "  ", "\t", "\n", "\r\n", "\r", "\v", "\f", "\x00", "\xff", "\xe2\x82", "\u00a0", "\u2028", "\ufdd0", "\ufffd", "\uffff",
	"<script>alert(1)</script>", "<b>", "</p>", `"`, "'", "`", "&", "&amp;", "+", "=", "%", "%2F", "%zz", "#", "?", "/", ":", "@",
	"javascript:alert(1)", "JavaScript:", "data:text/html,x", "http://", "https://", "HTTPS://", "mailto:", "www.example.com", "//evil.example",
	"{{.}}", "ZgotmplZ", "é", "日本語", "Ölfeld GmbH", "😀", "0", "1", "-1", "true", "a b", "Acme", "Design Suite", "M",
}

func iterations(n int) int {
	if testing.Short() {
		return n / 10
	}
	return n
}

func randString(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(5) {
		b.WriteString(nasty[r.IntN(len(nasty))])
	}
	return b.String()
}

func randWebsite(r *rand.Rand) string {
	sites := []string{"", "www.partner.example", "partner.example/renew?x=1&y=<2>", "https://partner.example", "http://p.example/a b",
		"javascript:alert(1)", " JAVASCRIPT:alert(1) ", "mailto:x@y.example", "ftp://files.example", "//cdn.example", "/relative", "a:b/c", "a/b:c",
		"  www.spaced.example  ", "%41%zz", "https://x.example/?q=\"'<>`", "\x00", "data:,x"}
	if r.IntN(4) == 0 {
		return randString(r)
	}
	return sites[r.IntN(len(sites))]
}

func randInt(r *rand.Rand) int {
	ints := []int{0, 1, 2, -1, 5, 10, 21, 25, 29, 30, 45, 90, 365, 1 << 40, -1 << 62}
	return ints[r.IntN(len(ints))]
}

func randSubscription(r *rand.Rand) (subscription.Subscription, subscription.Notice) {
	locales := []string{"en-GB", "en-US", "en_us", "EN-GB", "", "fr-FR", " en-GB "}
	dates := []subscription.Date{{}, subscription.MustDate("2027-03-31"), subscription.MustDate("2028-02-29"), {Year: 1, Month: 1, Day: 1}, {Year: 12345, Month: 14, Day: 40}, {Year: -5, Month: 1, Day: 1}}
	s := subscription.Subscription{
		ID:              randString(r),
		EndDate:         dates[r.IntN(len(dates))],
		CustomerName:    randString(r),
		CustomerAccount: randString(r),
		Product:         randString(r),
		AccessModel:     subscription.AccessModel(randString(r)),
		Term:            randString(r),
		Locale:          locales[r.IntN(len(locales))],
		ContractManager: subscription.Contact{Name: randString(r)},
	}
	if r.IntN(3) > 0 {
		seats, assigned := randInt(r), randInt(r)
		s.Seats, s.SeatsAssigned = &seats, &assigned
	}
	milestones := []int{90, 45, 30, 60, 1, 0, -30}
	n := subscription.Notice{
		Key:      subscription.NoticeKey{SubscriptionID: randString(r), EndDate: dates[r.IntN(len(dates))], Milestone: milestones[r.IntN(len(milestones))]},
		DaysLeft: randInt(r),
	}
	return s, n
}

func randReseller(r *rand.Rand) Reseller {
	return Reseller{Name: randString(r), Phone: randString(r), Email: randString(r), Website: randWebsite(r)}
}

// standard returns a copy of r that executes every template with the
// standard packages.
func standard(r *Renderer) *Renderer {
	std := *r
	std.standardOnly = true
	return &std
}

// withReseller returns a copy of r (sharing its templates) for reseller.
func withReseller(r *Renderer, reseller Reseller) *Renderer {
	c := *r
	c.reseller = reseller
	return &c
}

// sameRender renders s and n with r's fast path and with the standard
// packages and fails unless the emails, or the errors, are the same.
func sameRender(t testing.TB, r *Renderer, s subscription.Subscription, n subscription.Notice) {
	t.Helper()
	fast, ferr := r.Render(s, n)
	std, serr := standard(r).Render(s, n)
	if (ferr == nil) != (serr == nil) || ferr != nil && ferr.Error() != serr.Error() {
		t.Fatalf("errors differ: fast %v, standard %v\nsubscription %#v\nnotice %#v", ferr, serr, s, n)
	}
	if fast != std {
		t.Fatalf("emails differ for\nsubscription %#v\nnotice %#v\nreseller %#v\n%s", s, n, r.reseller, diff(fast, std))
	}
	sameRaw(t, r, r.DataFor(s, n))
}

// sameRaw executes each template of every set of r with d, fast and
// standard, and compares the raw output, before oneLine and tidy.
func sameRaw(t testing.TB, r *Renderer, d Data) {
	t.Helper()
	for _, l := range r.locales {
		for _, set := range l.sets {
			for _, c := range []struct {
				file string
				p    *program
				std  func(m *machine) error
			}{
				{set.subjectFile, set.fastSubject, func(m *machine) error { return set.subject.Execute(m, m.data) }},
				{set.textFile, set.fastText, func(m *machine) error { return set.text.ExecuteTemplate(m, "layout", m.data) }},
				{set.htmlFile, set.fastHTML, func(m *machine) error { return set.html.ExecuteTemplate(m, "layout", m.data) }},
			} {
				if c.p == nil {
					continue
				}
				m := &machine{data: d}
				c.p.render(m)
				fast := string(m.buf)
				m.buf = nil
				if err := c.std(m); err != nil {
					t.Fatalf("%s: standard execution failed: %v", c.file, err)
				}
				if fast != string(m.buf) {
					t.Fatalf("%s: raw output differs for %#v\nfast:     %q\nstandard: %q", c.file, d, fast, m.buf)
				}
			}
		}
	}
}

func diff(a, b Email) string {
	var out strings.Builder
	for _, f := range []struct{ name, a, b string }{
		{"Subject", a.Subject, b.Subject}, {"Text", a.Text, b.Text}, {"HTML", a.HTML, b.HTML},
		{"Locale", a.Locale, b.Locale}, {"Set", a.Set, b.Set},
	} {
		if f.a == f.b {
			continue
		}
		i := 0
		for i < len(f.a) && i < len(f.b) && f.a[i] == f.b[i] {
			i++
		}
		lo := max(0, i-60)
		fmt.Fprintf(&out, "%s differs at byte %d:\nfast:     %q\nstandard: %q\n", f.name, i, f.a[lo:min(len(f.a), i+60)], f.b[lo:min(len(f.b), i+60)])
	}
	return out.String()
}

// allFast fails unless compile accepted every template of r.
func allFast(t *testing.T, r *Renderer) {
	t.Helper()
	for _, l := range r.locales {
		for _, s := range l.sets {
			for _, e := range []error{s.slowSubject, s.slowText, s.slowHTML} {
				if e != nil {
					t.Errorf("%s/%s falls back: %v", l.name, s.name, e)
				}
			}
		}
	}
}

func TestFastPathMatchesStandardOnShippedTemplates(t *testing.T) {
	r, err := New(templates.FS, Reseller{Name: "Design Partners Ltd", Phone: "+44 1254 000000", Email: "renewals@partner.example", Website: "www.partner.example"})
	if err != nil {
		t.Fatal(err)
	}
	allFast(t, r)
	// Every locale and set with tidy data first.
	seats, assigned := 25, 21
	for _, loc := range []string{"en-GB", "en-US"} {
		for _, m := range []int{90, 45, 30, 60} {
			for _, days := range []int{0, 1, 2, m} {
				s := subscription.Subscription{
					ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), CustomerName: "Acme Engineering",
					CustomerAccount: "5100000001", Product: "Design Suite", Seats: &seats, SeatsAssigned: &assigned,
					Locale: loc, ContractManager: subscription.Contact{Name: "Carla Manager"},
				}
				n := subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: s.ID, EndDate: s.EndDate, Milestone: m}, DaysLeft: days}
				sameRender(t, r, s, n)
				sameRender(t, r, subscription.Subscription{Locale: loc}, n)
			}
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range iterations(1500) {
		s, n := randSubscription(rnd)
		sameRender(t, withReseller(r, randReseller(rnd)), s, n)
	}
}

// kitchenSink is a template tree that uses every construct the compiler
// supports, in every HTML context it supports.
var kitchenSink = map[string]string{
	"en-GB/layout.txt": `{{define "layout"}}{{template "content" .}}
M={{.Milestone}} D={{.DaysLeft}} H={{.HasSeats}} E={{.EndDate}} T={{.Term}} A={{.AccessModel}} CA={{.CustomerAccount}} K={{.NoticeKey}} S={{.Seats}}/{{.SeatsAssigned}}/{{.UnusedSeats}}
{{if and .HasSeats (gt .Seats 0)}}seats{{else if .HasSeats}}no seats{{else}}unknown{{end}}
{{with .Reseller}}{{.Name}}|{{$.Product}}|{{with .Website}}{{weburl .}}{{end}}{{template "sub" .}}{{end}}
{{or .ContactName .Customer "nobody"}} {{and .Product .Term}} {{not .Product}} {{not .Reseller}} {{len .Customer}} {{.Customer | len}} {{or .HasSeats}} {{and 0 .Seats}}
{{if ne .Milestone 30}}ne{{end}}{{if lt .DaysLeft 10}}lt{{end}}{{if le .DaysLeft 1}}le{{end}}{{if ge .UnusedSeats 2}}ge{{end}}{{if eq .Milestone 90 45 30}}eq3{{end}}
{{if eq .Product "Design Suite"}}ds{{end}}{{if lt .Customer "M"}}lt-M{{end}}{{if ge .Term .Product}}ge-s{{end}}{{if eq .HasSeats true}}hs{{end}}{{if ne .HasSeats false}}hs2{{end}}{{.DaysLeft | eq 5}}
{{date .EndDate "Mon 2 Jan 2006 15:04 MST"}} {{"2006-01-02" | date .EndDate}} {{date .EndDate .Term}} {{weburl .Reseller.Website}} {{.Reseller.Website | weburl}}
{{with $.Reseller}}{{$.Customer}}{{end}}{{/* a comment */}} {{- " trimmed " -}} {{true}} {{false}} {{-3}} {{'a'}} {{0x1F}} {{"const"}} {{(.Product)}}
{{with .ContactName}}c:{{.}}{{else with .Customer}}u:{{.}}{{else}}none{{end}} {{with .EndDate}}{{.}}{{end}}{{with .HasSeats}}{{.}}{{end}}{{with .Seats}}{{.}}{{end}}
{{template "deep" .}}{{end}}
{{define "sub"}}[{{.Name}} {{.Phone}} {{$.Email}}]{{end}}
{{define "deep"}}{{template "deeper" .Reseller}}{{end}}
{{define "deeper"}}{{with .Name}}{{.}}{{end}}{{end}}`,
	"en-GB/layout.html": `{{define "layout"}}<!DOCTYPE html><html><head><title>{{.Customer}} {{.DaysLeft}} {{.EndDate}}</title></head><body>
<p title="{{.Customer}}" class='{{.Product}}' data-x={{.ContactName}} data-n={{.Seats}}>{{.Customer}}</p>
<input value={{.Customer}}><input value="{{.HasSeats}}"><input value={{.HasSeats}}>
<a href="{{weburl .Reseller.Website}}">w</a><a href={{weburl .Reseller.Website}}>w2</a><a href='{{.Reseller.Website}}'>w3</a>
<a href="/search?q={{.Product}}&c={{.Customer}}#{{.Term}}">s</a><a href="mailto:{{.Reseller.Email}}">m</a><a href="{{.Reseller.Website}}/path/{{.Product}}">p</a>
<a href="https://x.example/{{.Seats}}?n={{.DaysLeft}}&d={{.EndDate}}&b={{.HasSeats}}">n</a><a href="{{.Seats}}">n2</a>
<textarea>{{.ContactName}} {{.Seats}}</textarea><!-- hidden {{.Customer}} -->
{{template "content" .}}
{{if gt .UnusedSeats 0}}<b>{{.UnusedSeats}}</b>{{else if eq .UnusedSeats 0}}none{{else}}{{.UnusedSeats}}{{end}}
{{with .Reseller}}{{template "sub" .}}<a href="{{weburl .Website}}">{{.Website}}</a>{{end}}
{{.EndDate}} {{.HasSeats}} {{date .EndDate "2 Jan 2006 <b>&+"}} {{len .Customer}} {{eq .Milestone 30}} {{not .Product}} {{or .ContactName .Customer}}
<img src="{{.Reseller.Website}}" alt="{{date .EndDate "Jan 2"}}" title={{date .EndDate "Jan 2"}}>
{{with .ContactName}}<span>{{.}}</span>{{end}}{{$.Term}} {{"<b>const</b>"}} {{'a'}} {{-7}} {{true}}
</body></html>{{end}}
{{define "sub"}}<span title="{{.Phone}}">{{.Name}}</span>{{end}}`,
	"en-GB/generic.subject.txt": `{{with .ContactName}}{{.}}: {{end}}{{.Product}} {{date .EndDate "2 Jan"}} {{.DaysLeft}} {{if eq .DaysLeft 1}}day{{else}}days{{end}}`,
	"en-GB/generic.body.txt":    `{{define "content"}}Text {{.Customer}} {{template "p" .}}{{end}}`,
	"en-GB/generic.body.html":   `{{define "content"}}<p>HTML {{.Customer}} {{template "p" .}}</p>{{end}}`,
	"en-GB/partials.txt":        `{{define "p"}}<{{.Product}}>{{end}}`,
	"en-GB/partials.html":       `{{define "p"}}<i>{{.Product}}</i>{{end}}`,
}

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, data := range files {
		m[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return m
}

// withoutVariables is the kitchen sink without $, so that the compiler
// inlines template calls.
func withoutVariables() map[string]string {
	out := map[string]string{}
	for name, src := range kitchenSink {
		out[name] = strings.NewReplacer("{{with $.Reseller}}{{$.Customer}}{{end}}", "", "{{$.Product}}", "", "{{$.Email}}", "", "{{$.Term}}", "").Replace(src)
		if strings.Contains(out[name], "$") {
			panic(name + " still mentions $")
		}
	}
	return out
}

func TestFastPathMatchesStandardOnEveryConstruct(t *testing.T) {
	for _, files := range []map[string]string{kitchenSink, withoutVariables()} {
		r, err := New(mapFS(files), Reseller{})
		if err != nil {
			t.Fatal(err)
		}
		allFast(t, r)
		rnd := rand.New(rand.NewPCG(5, 6))
		for range iterations(2000) {
			s, n := randSubscription(rnd)
			sameRender(t, withReseller(r, randReseller(rnd)), s, n)
		}
	}
}

// Templates the compiler does not support execute with the standard
// packages and so render exactly as before, errors included.
func TestUnsupportedConstructsFallBack(t *testing.T) {
	for _, tc := range []struct {
		name, file, data, why string
		slow                  func(*set) error
	}{
		{"range", "en-GB/generic.subject.txt", `{{range $i := .Milestone}}{{$i}}{{end}}x`, "not supported", func(s *set) error { return s.slowSubject }},
		{"printf", "en-GB/generic.subject.txt", `{{printf "%05d" .DaysLeft}} days`, `"printf"`, func(s *set) error { return s.slowSubject }},
		{"variable", "en-GB/partials.txt", `{{define "p"}}{{$x := .Product}}{{$x}}{{end}}`, "variables", func(s *set) error { return s.slowText }},
		{"method", "en-GB/partials.txt", `{{define "p"}}{{.EndDate.Year}} {{.EndDate.IsZero}}{{end}}`, "Year", func(s *set) error { return s.slowText }},
		{"mixed and", "en-GB/partials.txt", `{{define "p"}}{{and .Product .Seats}}{{end}}`, "and", func(s *set) error { return s.slowText }},
		{"float", "en-GB/partials.txt", `{{define "p"}}{{if eq .Seats 1.0}}x{{end}}{{end}}`, "1.0", func(s *set) error { return s.slowText }},
		{"struct print", "en-GB/partials.txt", `{{define "p"}}{{.Reseller}}{{end}}`, "printing", func(s *set) error { return s.slowText }},
		{"js context", "en-GB/partials.html", `{{define "p"}}<script>var p = {{.Product}};</script>{{end}}`, "escaper", func(s *set) error { return s.slowHTML }},
		{"css context", "en-GB/partials.html", `{{define "p"}}<p style="color: {{.Product}}">x</p>{{end}}`, "cssvaluefilter", func(s *set) error { return s.slowHTML }},
		{"derived template", "en-GB/partials.html", `{{define "p"}}<a title="{{template "q" .}}">x</a>{{end}}{{define "q"}}{{.Product}}{{end}}`, "no template", func(s *set) error { return s.slowHTML }},
		{"html builtin", "en-GB/partials.html", `{{define "p"}}{{html .Product}}{{end}}`, "escaper", func(s *set) error { return s.slowHTML }},
		{"recursion", "en-GB/partials.txt", `{{define "p"}}{{if gt (len .Product) 100}}{{template "p" .}}{{end}}{{end}}`, "calls itself", func(s *set) error { return s.slowText }},
		{"unknown field", "en-GB/partials.txt", `{{define "p"}}{{if .HasSeats}}{{.NoSuchField}}{{end}}{{end}}`, "NoSuchField", func(s *set) error { return s.slowText }},
		{"wrong date arg", "en-GB/partials.txt", `{{define "p"}}{{if .HasSeats}}{{date .Product "2006"}}{{end}}{{end}}`, "date", func(s *set) error { return s.slowText }},
		{"compare kinds", "en-GB/partials.txt", `{{define "p"}}{{if .HasSeats}}{{if eq .Seats "1"}}x{{end}}{{end}}{{end}}`, "eq", func(s *set) error { return s.slowText }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range kitchenSink {
				files[k] = v
			}
			files[tc.file] = tc.data
			r, err := New(mapFS(files), Reseller{Website: "www.partner.example"})
			if err != nil {
				t.Fatal(err)
			}
			set := r.locales["en-gb"].generic
			if why := tc.slow(set); why == nil || !strings.Contains(why.Error(), tc.why) {
				t.Errorf("compile: %v, want a refusal mentioning %q", why, tc.why)
			}
			rnd := rand.New(rand.NewPCG(7, 8))
			for range 300 {
				s, n := randSubscription(rnd)
				s.Product = strings.Repeat(s.Product, 1+rnd.IntN(2))
				sameRender(t, withReseller(r, randReseller(rnd)), s, n)
			}
			// And it renders what the standard packages render on their own.
			s, n := randSubscription(rnd)
			s.Product, s.Locale = "Suite <1>", "en-GB"
			e, err := r.Render(s, n)
			if err != nil {
				return // sameRender has compared the error with the standard one
			}
			h := htmltemplate.Must(htmltemplate.New("x").Funcs(funcs).Parse(files["en-GB/layout.html"] + files["en-GB/generic.body.html"] + files["en-GB/partials.html"]))
			var b strings.Builder
			if err := h.ExecuteTemplate(&b, "layout", r.DataFor(s, n)); err != nil {
				t.Fatal(err)
			}
			if b.String() != e.HTML {
				t.Errorf("HTML differs from html/template's own:\n%s\n%s", e.HTML, b.String())
			}
		})
	}
}

// An execution error is the standard package's error, whichever path ran.
func TestExecErrorsAreTheStandardOnes(t *testing.T) {
	files := map[string]string{}
	for k, v := range kitchenSink {
		files[k] = v
	}
	files["en-GB/generic.subject.txt"] = `{{if .HasSeats}}{{.Nope}}{{end}}subject`
	files["en-GB/generic.body.html"] = `{{define "content"}}{{if .HasSeats}}{{.Reseller.Nope}}{{end}}{{end}}`
	r, err := New(mapFS(files), Reseller{})
	if err != nil {
		t.Fatal(err)
	}
	seats := 3
	s := subscription.Subscription{ID: "X", Seats: &seats, SeatsAssigned: &seats}
	for _, tc := range []struct {
		s    subscription.Subscription
		want string
	}{{s, "can't evaluate field Nope"}, {subscription.Subscription{ID: "Y"}, ""}} {
		_, err := r.Render(tc.s, subscription.Notice{})
		_, serr := standard(r).Render(tc.s, subscription.Notice{})
		var ee *ExecError
		if tc.want == "" && err != nil || tc.want != "" && (!errors.As(err, &ee) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
		if fmt.Sprint(err) != fmt.Sprint(serr) {
			t.Errorf("err = %v, standard %v", err, serr)
		}
	}
	files["en-GB/generic.subject.txt"] = `{{if .HasSeats}}{{end}}`
	r, err = New(mapFS(files), Reseller{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Render(s, subscription.Notice{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty subject: %v", err)
	}
}

// fieldsOf must describe Data and Reseller exactly: every field, with the
// kind of its Go type, read from the right field.
func TestFieldsOfMatchesTheStructs(t *testing.T) {
	kinds := map[reflect.Type]kind{
		reflect.TypeFor[string](): kString, reflect.TypeFor[int](): kInt, reflect.TypeFor[bool](): kBool,
		reflect.TypeFor[subscription.Date](): kDate, reflect.TypeFor[Data](): kData, reflect.TypeFor[Reseller](): kReseller,
	}
	rnd := rand.New(rand.NewPCG(9, 10))
	d := Data{
		NoticeKey: "k", SubscriptionID: "id", Milestone: 90, DaysLeft: 88, EndDate: subscription.MustDate("2027-03-31"),
		Customer: "c", CustomerAccount: "ca", Product: "p", ContactName: "cn", HasSeats: true, Seats: 25, SeatsAssigned: 21,
		UnusedSeats: 4, AccessModel: "am", Term: "t", Reseller: randReseller(rnd),
	}
	for _, st := range []struct {
		k kind
		v reflect.Value
		w value
	}{{kData, reflect.ValueOf(d), value{d: &d}}, {kReseller, reflect.ValueOf(d.Reseller), value{r: &d.Reseller}}} {
		typ := st.v.Type()
		if typ.NumField() != len(fieldsOf[st.k]) {
			t.Errorf("%s has %d fields, fieldsOf %d", typ, typ.NumField(), len(fieldsOf[st.k]))
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			got, ok := fieldsOf[st.k][f.Name]
			if !ok {
				t.Errorf("%s.%s is missing from fieldsOf", typ, f.Name)
				continue
			}
			if got.k != kinds[f.Type] {
				t.Errorf("%s.%s: kind %s, want %s", typ, f.Name, got.k, kinds[f.Type])
			}
			v := got.get(st.w)
			var fv any
			switch got.k {
			case kString:
				fv = v.s
			case kInt:
				fv = v.i
			case kBool:
				fv = v.i != 0
			case kDate:
				fv = *v.t
			case kReseller:
				fv = *v.r
			}
			if want := st.v.Field(i).Interface(); fv != want {
				t.Errorf("%s.%s reads %v, want %v", typ, f.Name, fv, want)
			}
		}
	}
}

func FuzzFastPathMatchesStandard(f *testing.F) {
	shipped, err := New(templates.FS, Reseller{})
	if err != nil {
		f.Fatal(err)
	}
	sink, err := New(mapFS(kitchenSink), Reseller{})
	if err != nil {
		f.Fatal(err)
	}
	inlined, err := New(mapFS(withoutVariables()), Reseller{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Acme Engineering", "Design Suite", "Carla Manager", "www.partner.example", "Design Partners Ltd", "en-GB", 30, 29, 25, 21, true)
	f.Add("<script>alert(1)</script>", "a&b+c\x00", "\"quoted\" 'single'", "javascript:alert(1)", "", "en-US", 90, 1, 0, 0, true)
	f.Add("", "", "", "", "", "", 45, 0, 1, 0, false)
	f.Add("Ölfeld\r\nBcc: x", "\xff\ufdd0", " \t", "https://x.example/?q=<%zz>", "%41", "en_us", 60, -1, 5, 9, true)
	f.Fuzz(func(t *testing.T, customer, product, contact, website, name, locale string, milestone, days, seats, assigned int, hasSeats bool) {
		s := subscription.Subscription{
			ID: customer + product, EndDate: subscription.MustDate("2027-03-31"), CustomerName: customer, CustomerAccount: contact,
			Product: product, Term: website, AccessModel: subscription.AccessModel(name), Locale: locale,
			ContractManager: subscription.Contact{Name: contact},
		}
		if hasSeats {
			s.Seats, s.SeatsAssigned = &seats, &assigned
		}
		n := subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: s.ID, EndDate: s.EndDate, Milestone: milestone}, DaysLeft: days}
		res := Reseller{Name: name, Phone: product, Email: customer, Website: website}
		sameRender(t, withReseller(shipped, res), s, n)
		sameRender(t, withReseller(sink, res), s, n)
		sameRender(t, withReseller(inlined, res), s, n)
	})
}

// The shipped templates must all stay on the fast path, or rendering gets
// slower without anyone noticing.
func TestShippedTemplatesCompile(t *testing.T) {
	r, err := New(templates.FS, Reseller{})
	if err != nil {
		t.Fatal(err)
	}
	allFast(t, r)
	n := 0
	_ = fs.WalkDir(templates.FS, ".", func(string, fs.DirEntry, error) error { n++; return nil })
	if len(r.locales) < 2 || n < 10 {
		t.Fatalf("only %d locales", len(r.locales))
	}
}

// Renders run concurrently (the notifier's workers share one Renderer):
// pooled machines must not leak output from one render into another.
func TestConcurrentRendersMatchStandard(t *testing.T) {
	r, err := New(templates.FS, Reseller{Name: "Design Partners Ltd", Website: "www.partner.example"})
	if err != nil {
		t.Fatal(err)
	}
	type job struct {
		s    subscription.Subscription
		n    subscription.Notice
		want Email
	}
	rnd := rand.New(rand.NewPCG(11, 12))
	jobs := make([]job, iterations(400))
	for i := range jobs {
		s, n := randSubscription(rnd)
		want, err := standard(r).Render(s, n)
		if err != nil {
			t.Fatal(err)
		}
		jobs[i] = job{s, n, want}
	}
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := w; i < len(jobs); i += 4 {
				for j := range 3 {
					k := (i + j*7) % len(jobs)
					if got, err := r.Render(jobs[k].s, jobs[k].n); err != nil || got != jobs[k].want {
						errs <- fmt.Errorf("job %d: %v\n%s", k, err, diff(got, jobs[k].want))
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
