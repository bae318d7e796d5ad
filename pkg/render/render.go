// Package render turns a subscription and a due notice into the email's
// subject, plain text and HTML. The subject and the text execute with
// text/template, the HTML with html/template, which escapes every value for
// its context, and nothing else executes them: a Go release that fixes
// html/template fixes the emails. New compiles every template once; the
// data is a Data value.
//
// The template tree (see package templates):
//
//	layout.txt, layout.html      shared: each defines "layout", which executes "content"
//	partials.txt, partials.html  optional shared named templates
//	<locale>/                    a locale, named as BCP 47 (en-GB, en-US), holding
//	  locale.txt                 optional: its words and formats, named templates for its
//	                             subjects and bodies; one replaces a shared one of its name
//	  generic.subject.txt        the set for any milestone without its own; each
//	  generic.body.txt           body defines "content"
//	  generic.body.html
//	  <days>.subject.txt ...     a set for one milestone, e.g. 90.body.html
//	  after.subject.txt ...      optional: the set of the post-expiry notices (negative milestones)
package render

import (
	"bytes"
	"cmp"
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
	"time"

	"renewals/pkg/subscription"
)

// DefaultLocale is the locale used for a subscription with no locale or one
// that no template directory matches.
const DefaultLocale = "en-GB"

// Generic names the template set used for milestones without their own.
const Generic = "generic"

// After names the optional template set of the post-expiry notices
// (negative milestones): the subscription has ended and can still be
// renewed.
const After = "after"

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

// Data is what the templates see. Its fields come in the order the
// templates read them most, the most read first: text/template looks a
// field up by name on every access, comparing the names in order.
type Data struct {
	// Contract, when set, is the contract whose co-termed subscriptions this
	// one email is about; the subscription's fields are then its first
	// subscription's.
	Contract *Contract
	// DaysLeft is the days to the end date when the notice fell due, which
	// can be fewer than the Milestone's.
	DaysLeft int
	// DaysSinceEnd is the days since the end date for a post-expiry
	// notice (DaysLeft negative), else 0.
	DaysSinceEnd int
	// SubscriptionID, Product, HasSeats, Seats, UnusedSeats, HasUsage,
	// Unused and UnusedDays are the subscription's, as in Item; its seats
	// are also SeatsAssigned, and its usage is of UnusedOf as of UsageAsOf.
	// They are declared here rather than by embedding Item: a promoted
	// field takes reflect's much slower search through embedded structs.
	SubscriptionID string
	Product        string
	HasSeats       bool
	UnusedSeats    int
	Seats          int
	HasUsage       bool
	Unused         int
	UnusedDays     int
	UnusedOf       int
	// QuoteNumber, when set, is the reseller's renewal quote (see
	// QuoteExpiry, QuoteURL and QuoteExpired below).
	QuoteNumber string
	// Customer is the customer's name, else its account, else empty.
	Customer string
	// EndDate is the end of the term; format it with the date function:
	// {{date .EndDate "2 January 2006"}}.
	EndDate subscription.Date
	// ContactName is the contract manager's name; empty when unknown.
	ContactName string
	Reseller    Reseller
	// NoticeKey is the key in its string form, for reference in the footer.
	NoticeKey string
	// Locale is the template directory used, e.g. en-GB after a fallback.
	Locale string
	// SeatsAssigned is the subscription's seats assigned to users.
	SeatsAssigned int
	// QuoteExpired says the quote expired before the notice's day.
	QuoteExpired bool
	// QuoteExpiry is the day the quote is valid until; zero when not known.
	QuoteExpiry subscription.Date
	// QuoteURL links the quote; empty when not known.
	QuoteURL string
	// UsageAsOf is the day of the vendor's usage report that counted
	// Unused of UnusedOf seats.
	UsageAsOf subscription.Date
	// Milestone is the notice's stage in days (90, 45, 30, ...).
	Milestone       int
	CustomerAccount string
	AccessModel     string
	Term            string
}

// Contract is a contract's co-termed subscriptions in one email.
type Contract struct {
	Number string
	// Items are the subscriptions, in notice key order.
	Items []Item
}

// Item is one subscription of an email: the one of a notice, or one of a
// contract's.
type Item struct {
	SubscriptionID string
	Product        string
	// HasSeats says whether Seats and UnusedSeats are known; HasUsage
	// whether the vendor's usage export counted Unused seats unused for
	// UnusedDays days or more (the longest of 30, 60 and 90 with a count).
	HasSeats    bool
	Seats       int
	UnusedSeats int
	HasUsage    bool
	Unused      int
	UnusedDays  int
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
}

type locale struct {
	name string
	sets map[string]*set // "generic", "90", ...
}

type set struct {
	name                            string
	subjectFile, textFile, htmlFile string
	subject, text                   *texttemplate.Template // the subject file and the layout
	html                            *htmltemplate.Template // the layout
}

var (
	localeName = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	setFile    = regexp.MustCompile(`^(generic|after|[1-9][0-9]{0,3})\.(subject\.txt|body\.txt|body\.html)$`)
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
// when a template does not parse or html/template cannot escape it, when
// layout.txt or layout.html is missing, when a locale lacks a complete
// generic set, when a set lacks one of its three files, or when there is no
// DefaultLocale directory. Templates run with missingkey=error.
func New(fsys fs.FS, reseller Reseller) (*Renderer, error) {
	src := map[string]string{} // the template files by path
	for _, f := range []string{"layout.txt", "layout.html", "partials.txt", "partials.html"} {
		b, err := fs.ReadFile(fsys, f)
		switch {
		case err == nil:
			src[f] = string(b)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("load templates: %w", err)
		case strings.HasPrefix(f, "layout"):
			return nil, fmt.Errorf("load templates: %s is missing: the locales share layout.txt and layout.html beside their directories", f)
		}
	}
	dirs, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("load templates: %w", err)
	}
	r := &Renderer{reseller: reseller, locales: map[string]*locale{}}
	for _, d := range dirs {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		if !localeName.MatchString(d.Name()) {
			return nil, fmt.Errorf("load templates: directory %q is not a locale: name it as BCP 47, e.g. en-GB", d.Name())
		}
		key := strings.ToLower(d.Name())
		if _, dup := r.locales[key]; dup {
			return nil, fmt.Errorf("load templates: locale %s appears twice (names are compared without case)", d.Name())
		}
		if r.locales[key], err = loadLocale(fsys, d.Name(), src); err != nil {
			return nil, err
		}
	}
	if _, ok := r.locales[strings.ToLower(DefaultLocale)]; !ok {
		return nil, fmt.Errorf("load templates: no %s directory: the default locale's templates are required", DefaultLocale)
	}
	return r, nil
}

// loadLocale reads the locale's files into src, beside the shared ones, and
// compiles its sets.
func loadLocale(fsys fs.FS, dir string, src map[string]string) (*locale, error) {
	files, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("load templates: %w", err)
	}
	var sets []string
	for _, f := range files {
		name := f.Name()
		if f.IsDir() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".md") {
			continue
		}
		m := setFile.FindStringSubmatch(name)
		if m == nil && name != "locale.txt" {
			return nil, fmt.Errorf("load templates: %s: unexpected file: name it <generic|days>.subject.txt, .body.txt or .body.html, or locale.txt", path.Join(dir, name))
		}
		if m != nil && !slices.Contains(sets, m[1]) {
			sets = append(sets, m[1])
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("load templates: %w", err)
		}
		src[path.Join(dir, name)] = string(b)
	}
	if !slices.Contains(sets, Generic) {
		return nil, fmt.Errorf("load templates: %s has no generic set: add %s/generic.subject.txt, generic.body.txt and generic.body.html", dir, dir)
	}
	loc := &locale{name: dir, sets: map[string]*set{}}
	for _, name := range sets {
		if loc.sets[name], err = loadSet(dir, name, src); err != nil {
			return nil, err
		}
	}
	return loc, nil
}

func loadSet(dir, name string, src map[string]string) (*set, error) {
	s := &set{
		name:        name,
		subjectFile: path.Join(dir, name+".subject.txt"),
		textFile:    path.Join(dir, name+".body.txt"),
		htmlFile:    path.Join(dir, name+".body.html"),
	}
	for _, f := range []string{s.subjectFile, s.textFile, s.htmlFile} {
		if _, ok := src[f]; !ok {
			return nil, fmt.Errorf("load templates: %s is missing: set %q needs a subject, a text and an HTML body", f, name)
		}
	}
	// The subject and the text body share one text/template namespace.
	words := path.Join(dir, "locale.txt")
	text, err := parse(texttemplate.New("").Option("missingkey=error").Funcs(funcs), src, "layout.txt", "partials.txt", words, s.subjectFile, s.textFile)
	if err != nil {
		return nil, err
	}
	html, err := parse(htmltemplate.New("").Option("missingkey=error").Funcs(funcs), src, "layout.html", "partials.html", words, s.htmlFile)
	if err != nil {
		return nil, err
	}
	s.subject, s.text, s.html = text.Lookup(s.subjectFile), text.Lookup("layout"), html.Lookup("layout")
	if s.text == nil || text.Lookup("content") == nil || s.html == nil || html.Lookup("content") == nil {
		return nil, fmt.Errorf("load templates: set %s/%s: the layout must define \"layout\" and each body must define \"content\"", dir, name)
	}
	// html/template escapes on first execution, so a markup error (a value
	// in an unclosed attribute) would otherwise surface on a customer's
	// notice. Execute once with empty data: escaping errors fail start-up;
	// execution errors (an unknown field) are left to Render and Check.
	var he *htmltemplate.Error
	if err := s.html.Execute(io.Discard, Data{}); errors.As(err, &he) {
		return nil, fmt.Errorf("load templates: parse %s: %w", s.htmlFile, err)
	}
	return s, nil
}

// parse adds the files of src named, those that exist, to t in order, each
// under its path so that errors name the file. A template defined again
// replaces the earlier definition: a locale's words win over the partials.
func parse[T interface {
	New(string) T
	Parse(string) (T, error)
}](t T, src map[string]string, names ...string) (T, error) {
	for _, name := range names {
		if text, ok := src[name]; ok {
			if _, err := t.New(name).Parse(text); err != nil {
				return t, fmt.Errorf("load templates: parse %s: %w", name, err)
			}
		}
	}
	return t, nil
}

// pick returns the locale for tag (case and '_' or '-' do not matter),
// falling back to DefaultLocale, and the set for the milestone, falling
// back to the locale's generic set.
func (r *Renderer) pick(tag string, milestone int) (*locale, *set) {
	l, ok := r.locales[strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tag), "_", "-"))]
	if !ok {
		l = r.locales[strings.ToLower(DefaultLocale)]
	}
	if s, ok := l.sets[strconv.Itoa(milestone)]; ok {
		return l, s
	}
	if s, ok := l.sets[After]; ok && milestone < 0 {
		return l, s
	}
	return l, l.sets[Generic]
}

// DataFor returns the template data for a subscription's notice.
func (r *Renderer) DataFor(s subscription.Subscription, n subscription.Notice) Data {
	l, _ := r.pick(s.Locale, 0)
	d := Data{
		Locale:          l.name,
		NoticeKey:       n.Key.String(),
		SubscriptionID:  cmp.Or(s.ID, n.Key.SubscriptionID),
		Product:         s.Product,
		Milestone:       n.Key.Milestone,
		DaysLeft:        n.DaysLeft,
		DaysSinceEnd:    max(0, -n.DaysLeft),
		EndDate:         cmp.Or(n.Key.EndDate, s.EndDate),
		Customer:        cmp.Or(strings.TrimSpace(s.CustomerName), s.CustomerAccount),
		CustomerAccount: s.CustomerAccount,
		ContactName:     strings.TrimSpace(s.ContractManager.Name),
		AccessModel:     string(s.AccessModel),
		Term:            s.Term,
		Reseller:        r.reseller,
	}
	if unused, ok := s.UnusedSeats(); ok {
		d.HasSeats, d.Seats, d.SeatsAssigned, d.UnusedSeats = true, *s.Seats, *s.SeatsAssigned, unused
	}
	if s.Usage != nil {
		if n, days, ok := s.Usage.Unused(); ok {
			d.HasUsage, d.Unused, d.UnusedDays, d.UsageAsOf = true, n, days, s.Usage.AsOf
			d.UnusedOf = s.Usage.Users
			if s.Seats != nil {
				d.UnusedOf = *s.Seats
			}
		}
	}
	if s.QuoteNumber != "" {
		d.QuoteNumber, d.QuoteExpiry, d.QuoteURL = s.QuoteNumber, s.QuoteExpiry, s.QuoteURL
		today := d.EndDate.AddDays(-n.DaysLeft)
		d.QuoteExpired = !s.QuoteExpiry.IsZero() && s.QuoteExpiry.Before(today)
	}
	return d
}

// item returns the subscription's fields of d as an Item.
func (d Data) item() Item {
	return Item{
		SubscriptionID: d.SubscriptionID, Product: d.Product,
		HasSeats: d.HasSeats, Seats: d.Seats, UnusedSeats: d.UnusedSeats,
		HasUsage: d.HasUsage, Unused: d.Unused, UnusedDays: d.UnusedDays,
	}
}

// Render renders the notice's email in the subscription's locale (falling
// back to DefaultLocale) with the milestone's set (falling back to the
// generic set). A template that fails to execute, or a subject that comes
// out empty, returns an *ExecError.
func (r *Renderer) Render(s subscription.Subscription, n subscription.Notice) (Email, error) {
	return r.render(s.Locale, n.Key.Milestone, r.DataFor(s, n))
}

// RenderContract renders one email for the co-termed notices of a contract:
// subs[i] is the subscription of notices[i], all of one milestone, in key
// order. The locale is the first subscription's, and the templates list
// every subscription (Data.Contract).
func (r *Renderer) RenderContract(subs []subscription.Subscription, notices []subscription.Notice) (Email, error) {
	if len(subs) == 0 || len(subs) != len(notices) {
		return Email{}, fmt.Errorf("render contract: %d subscriptions for %d notices", len(subs), len(notices))
	}
	return r.render(subs[0].Locale, notices[0].Key.Milestone, r.ContractData(subs, notices))
}

// ContractData returns the template data of a contract email: DataFor the
// first notice, with every subscription in Contract and every key in
// NoticeKey.
func (r *Renderer) ContractData(subs []subscription.Subscription, notices []subscription.Notice) Data {
	d := r.DataFor(subs[0], notices[0])
	c := &Contract{Number: subs[0].ContractNumber, Items: make([]Item, len(subs))}
	keys := make([]string, len(notices))
	for i, s := range subs {
		c.Items[i] = r.DataFor(s, notices[i]).item()
		keys[i] = notices[i].Key.String()
	}
	d.Contract, d.NoticeKey = c, strings.Join(keys, ", ")
	return d
}

// buffers holds the buffers render executes into, so that an email costs
// one allocation of each output's final size rather than a builder's growth.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooled is the largest buffer kept for reuse; a bigger one, from an
// unusual template, goes to the garbage collector.
const maxPooled = 64 << 10

// render executes the set for the locale tag and milestone with data.
func (r *Renderer) render(tag string, milestone int, data Data) (Email, error) {
	l, set := r.pick(tag, milestone)
	// The three executions share one copy of the data in an interface. A
	// value, not a pointer: the fields of a value held in an interface are
	// not addressable, so text/template passes and prints them without
	// copying each one to the heap.
	var d any = data
	buf := buffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooled {
			buffers.Put(buf)
		}
	}()
	buf.Reset()
	if err := set.subject.Execute(buf, d); err != nil {
		return Email{}, &ExecError{Locale: l.name, File: set.subjectFile, Err: err}
	}
	e := Email{Subject: subscription.OneLine(buf.String()), Locale: l.name, Set: set.name}
	if e.Subject == "" {
		return Email{}, &ExecError{Locale: l.name, File: set.subjectFile, Err: errors.New("the subject is empty")}
	}
	buf.Reset()
	if err := set.text.Execute(buf, d); err != nil {
		return Email{}, &ExecError{Locale: l.name, File: set.textFile, Err: err}
	}
	e.Text = tidy(buf.Bytes())
	buf.Reset()
	if err := set.html.Execute(buf, d); err != nil {
		return Email{}, &ExecError{Locale: l.name, File: set.htmlFile, Err: err}
	}
	e.HTML = buf.String()
	return e, nil
}

// tidy trims trailing spaces and squeezes blank lines that optional
// sections of a text template leave behind: each line loses trailing spaces,
// tabs and CRs, runs of blank lines become one, white space at both ends
// goes, and one line break ends the text. It works in place: b is scratch
// (every write lands at or before the byte being read), and the result is
// the one allocation.
func tidy(b []byte) string {
	out, breaks := b[:0], 0 // line breaks met since the last line kept
	for line := range bytes.Lines(b) {
		if kept := bytes.TrimRight(line, " \t\r\n"); len(kept) > 0 {
			if len(out) > 0 {
				out = append(out, "\n\n"[:min(breaks, 2)]...)
			}
			out, breaks = append(out, kept...), 0
		}
		if line[len(line)-1] == '\n' {
			breaks++
		}
	}
	return string(append(bytes.TrimSpace(out), '\n'))
}

// Check renders every locale's every set with sample data, so that a
// template which parses but cannot execute (an unknown field) fails at
// start-up rather than on a customer's notice. It returns the first error.
func (r *Renderer) Check() error {
	s := SampleSubscription()
	// Every optional part once: usage and an open quote, then an expired one.
	withAll := s
	withAll.Usage = &subscription.SeatUsage{AsOf: s.EndDate.AddDays(-40), Users: 8, Unused30: 3, Unused60: 2}
	withAll.QuoteNumber, withAll.QuoteExpiry, withAll.QuoteURL = "Q-1", s.EndDate, "https://quotes.example/q/1"
	expired := withAll
	expired.QuoteExpiry = s.EndDate.AddDays(-400)
	for _, s := range []subscription.Subscription{s, withAll, expired} {
		if err := r.check(s); err != nil {
			return err
		}
	}
	return nil
}

func (r *Renderer) check(s subscription.Subscription) error {
	for _, l := range r.locales {
		s.Locale = l.name
		for name := range l.sets {
			m, err := strconv.Atoi(name)
			if err != nil {
				m = 999
			}
			if name == After {
				m = -1
			}
			n := subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: s.ID, EndDate: s.EndDate, Milestone: m}, DaysLeft: min(m, 30)}
			if _, err := r.Render(s, n); err != nil {
				return fmt.Errorf("check templates: %w", err)
			}
			// And as one email of a contract with a second subscription.
			first := s
			first.ContractNumber = "7001"
			other, on := first, n
			other.ID, on.Key.SubscriptionID = "110009999999", "110009999999"
			if _, err := r.RenderContract([]subscription.Subscription{first, other}, []subscription.Notice{n, on}); err != nil {
				return fmt.Errorf("check templates: %w", err)
			}
		}
	}
	return nil
}

// Locales returns the names of the template directories, sorted (en-GB,
// en-US, ...).
func (r *Renderer) Locales() []string {
	out := make([]string, 0, len(r.locales))
	for _, l := range r.locales {
		out = append(out, l.name)
	}
	slices.Sort(out)
	return out
}

// SampleSubscription is the subscription Check renders every template
// with: a preview for when no real subscription is chosen.
func SampleSubscription() subscription.Subscription {
	seats, assigned := 10, 7
	return subscription.Subscription{
		ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), CustomerName: "Example Ltd",
		CustomerAccount: "5550001", Product: "Example Suite", Seats: &seats, SeatsAssigned: &assigned,
		AccessModel: subscription.MultiUser, Status: subscription.StatusActive,
		ContractManager: subscription.Contact{Name: "Sam Sample", Email: "sam@example.com"},
	}
}
