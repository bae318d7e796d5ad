package render_test

import (
	"html"
	"io/fs"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/templates"
)

// Every template of the tree, executed by text/template and html/template
// alone, with markup, quotes, script URLs and line breaks in every field:
// the HTML escapes them, the text carries them as written, and the subject
// stays one line. It pins what the standard packages guarantee, so a Go
// upgrade that changes their escaping shows here first.
func TestHostileDataInEveryTemplate(t *testing.T) {
	const markup = `<script>alert(1)</script><img src=x onerror=alert(1)>"'`
	const crlf = "\r\nBcc: evil@attacker.example\r\nX-Evil: 1\r\n"
	hostile := func(s string) string { return s + " " + markup + crlf }
	sets := templateSets(t)
	for _, website := range []string{"javascript:alert(1)", " JavaScript:alert(1)", "javascript://x%0Aalert(1)", "vbscript:msgbox(1)", "data:text/html,<script>alert(1)</script>"} {
		benign := render.Reseller{Name: "Design Partners Ltd", Phone: "+44 1254 000000", Email: "renewals@partner.example", Website: "www.partner.example"}
		bad := render.Reseller{Name: hostile(benign.Name), Phone: hostile(benign.Phone), Email: `x"><script>alert(1)</script>@evil.example` + crlf, Website: website}
		plain, evil := renderer(t, benign), renderer(t, bad)
		for _, ls := range sets {
			s := sub(ls.locale)
			n := notice(s, ls.milestone, 1)
			want, err := plain.Render(s, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []*string{&s.CustomerName, &s.CustomerAccount, &s.Product, &s.ContractManager.Name, &s.Term} {
				*f = hostile(*f)
			}
			s.AccessModel = subscription.AccessModel(hostile(string(s.AccessModel)))
			e, err := evil.Render(s, n)
			if err != nil {
				t.Fatalf("%s/%s: %v", ls.locale, ls.set, err)
			}
			where := ls.locale + "/" + ls.set + " with website " + strconv.Quote(website)
			if e.Locale != ls.locale || e.Set != ls.set {
				t.Fatalf("%s: rendered %s/%s", where, e.Locale, e.Set)
			}
			checkHTML(t, where, e.HTML, want.HTML)
			for _, v := range []string{markup, "Acme Engineering " + markup, "Design Partners Ltd " + markup, strings.TrimSpace(website)} {
				if !strings.Contains(e.Text, v) {
					t.Errorf("%s: text lacks %q as written:\n%s", where, v, e.Text)
				}
			}
			if strings.Contains(e.Text, "&lt;") || strings.Contains(e.Text, "&#34;") {
				t.Errorf("%s: text is HTML-escaped:\n%s", where, e.Text)
			}
			checkSubject(t, where, e.Subject)
		}
	}
}

type localeSet struct {
	locale, set string
	milestone   int
}

// templateSets lists every set of every locale in the shipped tree, with a
// milestone that selects it (one with no set of its own for generic).
func templateSets(t *testing.T) []localeSet {
	t.Helper()
	subjects, err := fs.Glob(templates.FS, "*/*.subject.txt")
	if err != nil || len(subjects) < 8 {
		t.Fatalf("subjects %v: %v", subjects, err)
	}
	var out []localeSet
	for _, p := range subjects {
		locale, file, _ := strings.Cut(p, "/")
		set := strings.TrimSuffix(file, ".subject.txt")
		m, err := strconv.Atoi(set)
		if set == render.Generic {
			m, err = 61, nil
		}
		if set == render.After {
			m, err = -1, nil
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, localeSet{locale, set, m})
	}
	return out
}

func renderer(t *testing.T, r render.Reseller) *render.Renderer {
	t.Helper()
	rr, err := render.New(templates.FS, r)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

var (
	tagName = regexp.MustCompile(`<(/?[A-Za-z][A-Za-z0-9]*)`)
	urlAttr = regexp.MustCompile(`(?i)\b(?:href|src|action)\s*=\s*"([^"]*)"`)
)

// checkHTML holds the hostile render to the markup of the benign one: the
// same elements in the same order and the same count of each markup
// character, so no value added a tag, an attribute or a quote, and no link
// runs script.
func checkHTML(t *testing.T, where, got, benign string) {
	t.Helper()
	if strings.Contains(strings.ToLower(got), "<script") {
		t.Errorf("%s: HTML holds a raw <script:\n%s", where, got)
	}
	if g, w := strings.Join(tagName.FindAllString(got, -1), " "), strings.Join(tagName.FindAllString(benign, -1), " "); g != w {
		t.Errorf("%s: elements differ from the benign render:\n%s\n%s", where, g, w)
	}
	for _, c := range []string{"<", ">", `"`, "'"} {
		if g, w := strings.Count(got, c), strings.Count(benign, c); g != w {
			t.Errorf("%s: %d raw %q in the HTML, %d in the benign render", where, g, c, w)
		}
	}
	for _, m := range urlAttr.FindAllStringSubmatch(got, -1) {
		u := strings.ToLower(strings.Map(func(r rune) rune {
			if r <= ' ' {
				return -1
			}
			return r
		}, html.UnescapeString(m[1])))
		for _, scheme := range []string{"javascript:", "vbscript:", "data:"} {
			if strings.HasPrefix(u, scheme) {
				t.Errorf("%s: link %q runs %s", where, m[1], scheme)
			}
		}
	}
}

// checkSubject makes the subject the only header of a message and reads it
// back with net/mail: a line break in it would have added a header.
func checkSubject(t *testing.T, where, subject string) {
	t.Helper()
	if strings.ContainsFunc(subject, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		t.Errorf("%s: subject holds a control character: %q", where, subject)
	}
	msg, err := mail.ReadMessage(strings.NewReader("Subject: " + subject + "\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if len(msg.Header) != 1 || msg.Header.Get("Subject") != subject {
		t.Errorf("%s: subject %q reads back as headers %v", where, subject, msg.Header)
	}
}
