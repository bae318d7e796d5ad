// Package render turns a subscription and a due notice into the email's
// subject, plain text and HTML, from templates compiled once at start-up.
//
// The template tree (see package templates) holds one directory per locale,
// named as BCP 47 (en-GB, en-US). Each locale directory holds
//
//	layout.txt, layout.html       the frame shared by every milestone: it must
//	                              define "layout", which executes "content"
//	partials.txt, partials.html   optional shared named templates
//	generic.subject.txt           the set for any milestone without its own
//	generic.body.txt
//	generic.body.html
//	<days>.subject.txt ...        a set for one milestone, e.g. 90.body.html
//
// Subjects and text bodies are text/template; HTML bodies are html/template,
// which escapes every value for its context. The data is a Data value.
//
// Those packages define the output, but they do not execute it: New also
// compiles each template (after html/template has escaped it) into a
// program of closures specialised to Data, which Render runs and which
// writes the same bytes without reflection (compile.go). A template that
// uses something the compiler does not support, such as range, printf or a
// variable, executes with text/template or html/template instead, so an
// edited template always renders as those packages say; tests compare the
// two byte for byte.
package render

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"text/template/parse"
	"time"

	"renewals/pkg/subscription"
)

// DefaultLocale is the locale used for a subscription with no locale or one
// that no template directory matches.
const DefaultLocale = "en-GB"

// Generic names the template set used for milestones without their own.
const Generic = "generic"

// Reseller is who the customer should contact: it comes from configuration
// and appears in every email.
type Reseller struct {
	Name    string
	Phone   string
	Email   string
	Website string
}

// Email is a rendered notice.
type Email struct {
	// Subject is one line: CR, LF and runs of white space became one space.
	Subject string
	Text    string
	HTML    string
	// Locale is the template directory used, e.g. en-GB after a fallback.
	Locale string
	// Set is the template set used: the milestone's days, or "generic".
	Set string
}

// Data is what the templates see.
type Data struct {
	// NoticeKey is the key in its string form, for reference in the footer.
	NoticeKey      string
	SubscriptionID string
	// Milestone is the notice's stage in days (90, 45, 30, ...); DaysLeft is
	// the days to the end date when the notice fell due, which can be fewer.
	Milestone int
	DaysLeft  int
	// EndDate is the end of the term; format it with the date function:
	// {{date .EndDate "2 January 2006"}}.
	EndDate subscription.Date
	// Customer is the customer's name, else its account, else empty.
	Customer        string
	CustomerAccount string
	Product         string
	// ContactName is the contract manager's name; empty when unknown.
	ContactName string
	// HasSeats says whether Seats, SeatsAssigned and UnusedSeats are known.
	HasSeats      bool
	Seats         int
	SeatsAssigned int
	UnusedSeats   int
	AccessModel   string
	Term          string
	Reseller      Reseller
}

// ExecError is a template that failed to execute for a notice: a missing
// key, a bad call, an empty subject. It is permanent (rendering the same
// notice again fails the same way): treat the notice as a poison message.
type ExecError struct {
	Locale string
	// File is the template file that failed, e.g. "en-GB/90.body.html".
	File string
	Err  error
}

// Error names the file and the failure.
func (e *ExecError) Error() string {
	return fmt.Sprintf("render template %s: %v", e.File, e.Err)
}

// Unwrap returns the template package's error.
func (e *ExecError) Unwrap() error { return e.Err }

// Renderer holds the compiled templates. It is safe for concurrent use.
type Renderer struct {
	reseller Reseller
	locales  map[string]*locale // by lower-case name
	// byTag finds a locale by a tag as subscriptions write it (en-GB,
	// en-gb, en_GB, ...) without normalising it first; byTag[""] is the
	// default.
	byTag map[string]*locale
	// standardOnly makes Render execute every template with text/template
	// and html/template, for tests that compare the fast path with them.
	standardOnly bool
}

type locale struct {
	name string
	sets map[string]*set // "generic", "90", ...
	// byDays holds the milestone sets by their days, and generic the
	// generic set: pick looks them up without formatting a number.
	byDays  map[int]*set
	generic *set
}

type set struct {
	name                            string
	subjectFile, textFile, htmlFile string
	subject                         *texttemplate.Template
	text                            *texttemplate.Template
	html                            *htmltemplate.Template
	// The compiled fast path of each (see compile.go); nil when compile
	// refused the template, which then executes with its standard package.
	fastSubject, fastText, fastHTML *program
	// Why compile refused each, for tests and diagnosis.
	slowSubject, slowText, slowHTML error
}

var (
	localeName = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	setFile    = regexp.MustCompile(`^(generic|[1-9][0-9]{0,3})\.(subject\.txt|body\.txt|body\.html)$`)
)

var funcs = map[string]any{
	"date":   date,
	"weburl": weburl,
}

// date formats a subscription.Date with a Go time layout.
func date(d subscription.Date, layout string) string {
	if d.IsZero() {
		return ""
	}
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC).Format(layout)
}

// weburl makes a website written without a scheme ("www.example.com") a
// link; html/template still neutralises unsafe schemes.
func weburl(s string) string {
	s = strings.TrimSpace(s)
	if s != "" && !strings.Contains(s, "://") {
		return "https://" + s
	}
	return s
}

// New compiles every template under fsys once. It fails, naming the file,
// when a template does not parse, when a locale lacks its layout or a
// complete generic set, when a set lacks one of its three files, or when
// there is no DefaultLocale directory. Templates run with missingkey=error.
func New(fsys fs.FS, reseller Reseller) (*Renderer, error) {
	r := &Renderer{reseller: reseller, locales: map[string]*locale{}}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("load templates: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if !localeName.MatchString(e.Name()) {
			return nil, fmt.Errorf("load templates: directory %q is not a locale: name it as BCP 47, e.g. en-GB", e.Name())
		}
		loc, err := loadLocale(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		key := strings.ToLower(e.Name())
		if _, dup := r.locales[key]; dup {
			return nil, fmt.Errorf("load templates: locale %s appears twice (names are compared without case)", e.Name())
		}
		r.locales[key] = loc
	}
	if _, ok := r.locales[strings.ToLower(DefaultLocale)]; !ok {
		return nil, fmt.Errorf("load templates: no %s directory: the default locale's templates are required", DefaultLocale)
	}
	r.byTag = map[string]*locale{"": r.locales[strings.ToLower(DefaultLocale)]}
	for key, l := range r.locales {
		for _, tag := range []string{key, l.name, strings.ToUpper(key), strings.ReplaceAll(key, "-", "_"), strings.ReplaceAll(l.name, "-", "_")} {
			r.byTag[tag] = l
		}
	}
	return r, nil
}

func readFile(fsys fs.FS, name string) (string, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return "", fmt.Errorf("load templates: %w", err)
	}
	return string(b), nil
}

func exists(fsys fs.FS, name string) bool {
	_, err := fs.Stat(fsys, name)
	return err == nil
}

func loadLocale(fsys fs.FS, dir string) (*locale, error) {
	files, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("load templates: %w", err)
	}
	names := map[string]bool{}
	for _, f := range files {
		if f.IsDir() {
			continue
		}
		m := setFile.FindStringSubmatch(f.Name())
		switch {
		case m != nil:
			names[m[1]] = true
		case slices.Contains([]string{"layout.txt", "layout.html", "partials.txt", "partials.html"}, f.Name()),
			strings.HasPrefix(f.Name(), "."), strings.HasSuffix(f.Name(), ".md"):
		default:
			return nil, fmt.Errorf("load templates: %s: unexpected file: name it <generic|days>.subject.txt, .body.txt or .body.html", path.Join(dir, f.Name()))
		}
	}
	if !names[Generic] {
		return nil, fmt.Errorf("load templates: %s has no generic set: add %s/generic.subject.txt, generic.body.txt and generic.body.html", dir, dir)
	}
	shared := map[string]string{}
	for _, f := range []string{"layout.txt", "layout.html", "partials.txt", "partials.html"} {
		p := path.Join(dir, f)
		if !exists(fsys, p) {
			if strings.HasPrefix(f, "layout") {
				return nil, fmt.Errorf("load templates: %s is missing: every locale needs layout.txt and layout.html", p)
			}
			continue
		}
		if shared[f], err = readFile(fsys, p); err != nil {
			return nil, err
		}
	}
	loc := &locale{name: dir, sets: map[string]*set{}, byDays: map[int]*set{}}
	for name := range names {
		s, err := loadSet(fsys, dir, name, shared)
		if err != nil {
			return nil, err
		}
		loc.sets[name] = s
		if days, err := strconv.Atoi(name); err == nil {
			loc.byDays[days] = s
		}
	}
	loc.generic = loc.sets[Generic]
	return loc, nil
}

func loadSet(fsys fs.FS, dir, name string, shared map[string]string) (*set, error) {
	s := &set{
		name:        name,
		subjectFile: path.Join(dir, name+".subject.txt"),
		textFile:    path.Join(dir, name+".body.txt"),
		htmlFile:    path.Join(dir, name+".body.html"),
	}
	src := map[string]string{}
	for _, f := range []string{s.subjectFile, s.textFile, s.htmlFile} {
		if !exists(fsys, f) {
			return nil, fmt.Errorf("load templates: %s is missing: set %q needs a subject, a text and an HTML body", f, name)
		}
		var err error
		if src[f], err = readFile(fsys, f); err != nil {
			return nil, err
		}
	}
	var err error
	// Each file parses under its own path as name, so errors name the file.
	if s.subject, err = parseText(s.subjectFile, src[s.subjectFile], dir, shared["partials.txt"]); err != nil {
		return nil, err
	}
	if s.text, err = parseText(path.Join(dir, "layout.txt"), shared["layout.txt"], dir, shared["partials.txt"]); err != nil {
		return nil, err
	}
	if _, err = s.text.New(s.textFile).Parse(src[s.textFile]); err != nil {
		return nil, fmt.Errorf("load templates: parse %s: %w", s.textFile, err)
	}
	if s.html, err = parseHTML(path.Join(dir, "layout.html"), shared["layout.html"], dir, shared["partials.html"]); err != nil {
		return nil, err
	}
	if _, err = s.html.New(s.htmlFile).Parse(src[s.htmlFile]); err != nil {
		return nil, fmt.Errorf("load templates: parse %s: %w", s.htmlFile, err)
	}
	// html/template escapes on first execution, so a markup error (a value
	// in an unclosed attribute) would otherwise surface on a customer's
	// notice. Execute once with empty data: escaping errors fail start-up;
	// execution errors (an unknown field) are left to Render and Check.
	var he *htmltemplate.Error
	if s.html.Lookup("layout") != nil {
		if err := s.html.ExecuteTemplate(io.Discard, "layout", Data{}); errors.As(err, &he) {
			return nil, fmt.Errorf("load templates: parse %s: %w", s.htmlFile, err)
		}
	}
	for _, c := range []struct {
		file string
		ok   bool
	}{
		{s.textFile, s.text.Lookup("layout") != nil && s.text.Lookup("content") != nil},
		{s.htmlFile, s.html.Lookup("layout") != nil && s.html.Lookup("content") != nil},
	} {
		if !c.ok {
			return nil, fmt.Errorf("load templates: %s: the layout must define \"layout\" and the body must define \"content\"", c.file)
		}
	}
	s.compile()
	return s, nil
}

// compile builds the fast path of each template of the set. It runs after
// the trial execution above, so html/template has escaped the HTML layout and
// every template it calls: compile reads the escaped trees.
func (s *set) compile() {
	text := func(t *texttemplate.Template) func(string) *parse.Tree {
		return func(name string) *parse.Tree {
			if t := t.Lookup(name); t != nil {
				return t.Tree
			}
			return nil
		}
	}
	s.fastSubject, s.slowSubject = newCompiler(false, text(s.subject)).compile(s.subject.Name())
	s.fastText, s.slowText = newCompiler(false, text(s.text)).compile("layout")
	s.fastHTML, s.slowHTML = newCompiler(true, func(name string) *parse.Tree {
		if t := s.html.Lookup(name); t != nil {
			return t.Tree
		}
		return nil
	}).compile("layout")
}

func parseText(name, src, dir, partials string) (*texttemplate.Template, error) {
	t, err := texttemplate.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("load templates: parse %s: %w", name, err)
	}
	if partials != "" {
		p := path.Join(dir, "partials.txt")
		if _, err := t.New(p).Parse(partials); err != nil {
			return nil, fmt.Errorf("load templates: parse %s: %w", p, err)
		}
	}
	return t, nil
}

func parseHTML(name, src, dir, partials string) (*htmltemplate.Template, error) {
	t, err := htmltemplate.New(name).Option("missingkey=error").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("load templates: parse %s: %w", name, err)
	}
	if partials != "" {
		p := path.Join(dir, "partials.html")
		if _, err := t.New(p).Parse(partials); err != nil {
			return nil, fmt.Errorf("load templates: parse %s: %w", p, err)
		}
	}
	return t, nil
}

// Locales returns the locale directories, sorted.
func (r *Renderer) Locales() []string {
	var out []string
	for _, l := range r.locales {
		out = append(out, l.name)
	}
	slices.Sort(out)
	return out
}

// pick returns the locale for tag (case and '_' or '-' do not matter),
// falling back to DefaultLocale, and the set for the milestone, falling
// back to the locale's generic set.
func (r *Renderer) pick(tag string, milestone int) (*locale, *set) {
	l, ok := r.byTag[tag]
	if !ok {
		if l, ok = r.locales[strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tag), "_", "-"))]; !ok {
			l = r.locales[strings.ToLower(DefaultLocale)]
		}
	}
	if s, ok := l.byDays[milestone]; ok {
		return l, s
	}
	return l, l.generic
}

// DataFor returns the template data for a subscription's notice.
func (r *Renderer) DataFor(s subscription.Subscription, n subscription.Notice) Data {
	d := Data{
		NoticeKey:       n.Key.String(),
		SubscriptionID:  s.ID,
		Milestone:       n.Key.Milestone,
		DaysLeft:        n.DaysLeft,
		EndDate:         n.Key.EndDate,
		Customer:        strings.TrimSpace(s.CustomerName),
		CustomerAccount: s.CustomerAccount,
		Product:         s.Product,
		ContactName:     strings.TrimSpace(s.ContractManager.Name),
		AccessModel:     string(s.AccessModel),
		Term:            s.Term,
		Reseller:        r.reseller,
	}
	if d.SubscriptionID == "" {
		d.SubscriptionID = n.Key.SubscriptionID
	}
	if d.EndDate.IsZero() {
		d.EndDate = s.EndDate
	}
	if d.Customer == "" {
		d.Customer = s.CustomerAccount
	}
	if unused, ok := s.UnusedSeats(); ok {
		d.HasSeats, d.Seats, d.SeatsAssigned, d.UnusedSeats = true, *s.Seats, *s.SeatsAssigned, unused
	}
	return d
}

// Render renders the notice's email in the subscription's locale (falling
// back to DefaultLocale) with the milestone's set (falling back to the
// generic set). A template that fails to execute returns an *ExecError.
//
// Each template runs as its compiled program (compile.go) when it has one
// and with text/template or html/template when it has not; the two give the
// same bytes.
func (r *Renderer) Render(s subscription.Subscription, n subscription.Notice) (Email, error) {
	l, set := r.pick(s.Locale, n.Key.Milestone)
	m := machines.Get().(*machine)
	defer putMachine(m)
	m.data = r.DataFor(s, n)
	e := Email{Locale: l.name, Set: set.name}
	m.buf = m.buf[:0]
	if p := r.fast(set.fastSubject); p != nil {
		p.render(m)
	} else if err := set.subject.Execute(m, m.data); err != nil {
		return Email{}, &ExecError{Locale: l.name, File: set.subjectFile, Err: err}
	}
	e.Subject = subscription.OneLine(string(m.buf))
	if e.Subject == "" {
		return Email{}, &ExecError{Locale: l.name, File: set.subjectFile, Err: errors.New("the subject is empty")}
	}
	m.buf = m.buf[:0]
	if p := r.fast(set.fastText); p != nil {
		p.render(m)
	} else if err := set.text.ExecuteTemplate(m, "layout", m.data); err != nil {
		return Email{}, &ExecError{Locale: l.name, File: set.textFile, Err: err}
	}
	e.Text = tidy(m.buf)
	m.buf = m.buf[:0]
	if p := r.fast(set.fastHTML); p != nil {
		p.render(m)
	} else if err := set.html.ExecuteTemplate(m, "layout", m.data); err != nil {
		return Email{}, &ExecError{Locale: l.name, File: set.htmlFile, Err: err}
	}
	e.HTML = string(m.buf)
	return e, nil
}

// fast returns p unless the Renderer is to use the standard packages only.
func (r *Renderer) fast(p *program) *program {
	if r.standardOnly {
		return nil
	}
	return p
}

// machines holds the machines renders run in, so that a render grows no
// buffer once the pool is warm.
var machines = sync.Pool{New: func() any { return new(machine) }}

func putMachine(m *machine) {
	m.data, m.root = Data{}, value{}
	if cap(m.buf) <= 1<<20 { // a notice is a few kB; let an outlier go
		machines.Put(m)
	}
}

// tidy trims trailing spaces and squeezes blank lines that optional
// sections of a text template leave behind: each line loses trailing spaces,
// tabs and CRs, runs of blank lines become one, white space at both ends
// goes, and one line break ends the text.
func tidy(b []byte) string {
	var out strings.Builder
	out.Grow(len(b) + 1)
	blank := 0 // blank lines held back: written only before more text
	for len(b) > 0 {
		line := b
		rest := []byte(nil)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, rest = b[:i], b[i+1:]
		}
		for n := len(line); n > 0 && (line[n-1] == ' ' || line[n-1] == '\t' || line[n-1] == '\r'); n-- {
			line = line[:n-1]
		}
		if len(line) == 0 {
			blank++
		} else {
			if out.Len() > 0 {
				out.WriteByte('\n')
				if blank > 0 {
					out.WriteByte('\n')
				}
			}
			blank = 0
			out.Write(line)
		}
		b = rest
	}
	out.WriteByte('\n')
	// Only white space that strings.TrimSpace would also take can be left at
	// the ends (Unicode spaces; line breaks are gone already).
	s := out.String()
	if body := s[:len(s)-1]; len(strings.TrimSpace(body)) != len(body) {
		return strings.TrimSpace(body) + "\n"
	}
	return s
}

// Check renders every locale's every set with sample data, so that a
// template which parses but cannot execute (an unknown field) fails at
// start-up rather than on a customer's notice. It returns the first error.
func (r *Renderer) Check() error {
	seats, assigned := 10, 7
	s := subscription.Subscription{
		ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), CustomerName: "Example Ltd",
		CustomerAccount: "5550001", Product: "Example Suite", Seats: &seats, SeatsAssigned: &assigned,
		AccessModel: subscription.MultiUser, Status: subscription.StatusActive,
		ContractManager: subscription.Contact{Name: "Sam Sample", Email: "sam@example.com"},
	}
	for _, l := range r.locales {
		s.Locale = l.name
		for name := range l.sets {
			m, err := strconv.Atoi(name)
			if err != nil {
				m = 999
			}
			n := subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: s.ID, EndDate: s.EndDate, Milestone: m}, DaysLeft: min(m, 30)}
			if _, err := r.Render(s, n); err != nil {
				return fmt.Errorf("check templates: %w", err)
			}
		}
	}
	return nil
}
