package importer

import (
	"bytes"
	"fmt"
	"net/mail"
	neturl "net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"

	"renewals/pkg/subscription"
)

// Limits on field values.
const (
	// MaxFieldChars is the longest text value, in characters.
	MaxFieldChars = 256
	// MaxEmailBytes is the longest email address (RFC 5321's path limit).
	MaxEmailBytes = 254
)

// Validate turns one row's fields (as Record.Fields: lower-case names to raw
// values) into a subscription. Values are trimmed of surrounding white space
// and an empty value is the same as an absent field. It returns one
// FieldError per rejected field, in the order of the import format's field
// list, each with a reason that says what to do; the subscription is only
// meaningful when there are none. Fields it does not know are ignored.
//
// The rules: subscription_id as subscription.ValidID, required; end_date
// required and start_date optional, both ISO 8601 YYYY-MM-DD only; seats and
// seats_assigned whole numbers of 0 or more (assigned may exceed seats: both
// are kept as given); access_model single-user or multi-user and status
// active (the default), renewal_in_progress or cancelled, in any case;
// cm_email and pa_email exactly one bare address each (no display name or
// brackets, at most 254 bytes, a dot in the domain), and sa_emails any
// number of them separated by ';'; timezone an IANA zone name; locale a BCP
// 47 language tag, stored in canonical form (en-gb becomes en-GB); every
// other value at most 256 characters of valid UTF-8 with no control
// characters (line breaks included). Unicode text is welcome.
func Validate(fields map[string]string) (subscription.Subscription, []FieldError) {
	return validate(fields, DateISO)
}

// validate is Validate with the import's date forms: dates is DateISO for
// ISO dates only, as Validate; else Excel serial dates and dates with
// slashes are read too, in the order dates says (DateAuto: only those that
// do not depend on it).
func validate(fields map[string]string, dates DateFormat) (subscription.Subscription, []FieldError) {
	v := validator{fields: fields, dates: dates}
	s := subscription.Subscription{Status: subscription.StatusActive}

	if id, ok := v.get("subscription_id"); !ok {
		v.fail("subscription_id", "is missing: every row needs the subscription id")
	} else if err := subscription.ValidID(id); err != nil {
		v.fail("subscription_id", err.Error())
	} else {
		s.ID = id
	}
	if _, ok := v.get("end_date"); !ok {
		v.fail("end_date", "is missing: every row needs the end date of the term, as YYYY-MM-DD, e.g. 2027-05-31")
	}
	s.EndDate = v.date("end_date")
	s.CustomerAccount = v.text("customer_account")
	s.CustomerName = v.text("customer_name")
	s.Product = v.text("product")
	s.Seats = v.count("seats")
	s.SeatsAssigned = v.count("seats_assigned")
	if a := v.text("access_model"); a != "" {
		if m := subscription.AccessModel(strings.ToLower(a)); m.Valid() {
			s.AccessModel = m
		} else {
			v.fail("access_model", fmt.Sprintf("%q is not an access model: use single-user or multi-user", truncate(a, 40)))
		}
	}
	s.Term = v.text("term")
	s.StartDate = v.date("start_date")
	if st := v.text("status"); st != "" {
		if ours, ok := statusOf(st); ok {
			s.Status = ours
		} else {
			v.fail("status", fmt.Sprintf("%q is not a status: use active, renewal_in_progress or cancelled, or the vendor's Active, Expired, Suspended, Canceled, Terminated or Inactive", truncate(st, 40)))
		}
	}
	s.ContractManager = subscription.Contact{Name: v.text("cm_name"), Email: v.email("cm_email"), Phone: v.text("cm_phone")}
	s.PrimaryAdmin = subscription.Contact{Name: v.text("pa_name"), Email: v.email("pa_email")}
	s.SecondaryAdmins = v.emails("sa_emails")
	if tz := v.text("timezone"); tz != "" {
		if _, err := subscription.LoadLocation(tz); err != nil || strings.EqualFold(tz, "local") {
			v.fail("timezone", fmt.Sprintf("%q is not an IANA time zone: use a name such as Europe/London", truncate(tz, 40)))
		} else {
			s.Timezone = tz
		}
	}
	if l := v.text("locale"); l != "" {
		tag, err := language.Parse(l)
		if base, _ := tag.Base(); err != nil || base.String() == "und" {
			v.fail("locale", fmt.Sprintf("%q is not a language tag: use a BCP 47 tag such as en-GB or de-DE", truncate(l, 40)))
		} else {
			s.Locale = tag.String()
		}
	}
	s.ResellerRep = v.text("reseller_rep")
	s.ContractNumber = v.text("contract_number")
	s.AutorenewDate = v.date("autorenew_date")
	s.Team = v.text("team")
	s.QuoteNumber = v.text("quote_number")
	s.QuoteExpiry = v.date("quote_expiry")
	s.QuoteURL = v.url("quote_url")
	return s, v.errs
}

// validator checks the fields of a row and collects the reasons it
// rejects them.
type validator struct {
	fields map[string]string
	dates  DateFormat
	errs   []FieldError
}

func (v *validator) fail(field, reason string) {
	v.errs = append(v.errs, FieldError{Field: field, Reason: reason})
}

// get returns the trimmed value, and false when it is absent or empty.
func (v *validator) get(field string) (string, bool) {
	s := strings.TrimSpace(v.fields[field])
	return s, s != ""
}

// plain checks the rules that every value obeys, and reports the first
// broken one.
func (v *validator) plain(field, s string) bool {
	if !utf8.ValidString(s) {
		v.fail(field, notUTF8)
		return false
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		what := fmt.Sprintf("a control character (%U)", r)
		switch r {
		case '\n', '\r':
			what = "a line break"
		case '\t':
			what = "a tab"
		}
		v.fail(field, fmt.Sprintf("contains %s: put the value on one line, without control characters", what))
		return false
	}
	if n := utf8.RuneCountInString(s); n > MaxFieldChars {
		v.fail(field, fmt.Sprintf("is %d characters long: shorten it to at most %d", n, MaxFieldChars))
		return false
	}
	return true
}

func (v *validator) text(field string) string {
	s, ok := v.get(field)
	if !ok || !v.plain(field, s) {
		return ""
	}
	return s
}

// date reads an optional date; "" and a value that breaks a rule of
// plain are the zero Date.
func (v *validator) date(field string) subscription.Date {
	s := v.text(field)
	if s == "" {
		return subscription.Date{}
	}
	if v.dates == DateISO {
		d, err := subscription.ParseDate(s)
		if err != nil {
			v.fail(field, fmt.Sprintf("%q is not a date: use YYYY-MM-DD, e.g. %s", truncate(s, 40), example(s)))
			return subscription.Date{}
		}
		return d
	}
	d, ok := parseDate(s, v.dates)
	if !ok {
		how := "use YYYY-MM-DD, e.g. 2027-05-31"
		if _, _, _, slash := slashDate(s); slash && v.dates != DateAuto {
			how = fmt.Sprintf("the file's dates are %s, and this is not a day in that order", v.dates)
		}
		v.fail(field, fmt.Sprintf("%q is not a date: %s", truncate(s, 40), how))
		return subscription.Date{}
	}
	return d
}

// MaxURLBytes is the longest quote link.
const MaxURLBytes = 2048

// url accepts an absolute http or https link of at most MaxURLBytes.
func (v *validator) url(field string) string {
	s, ok := v.get(field)
	if !ok {
		return ""
	}
	if !utf8.ValidString(s) {
		v.fail(field, notUTF8)
		return ""
	}
	u, err := neturl.Parse(s)
	switch {
	case len(s) > MaxURLBytes:
		v.fail(field, fmt.Sprintf("is %d bytes long: give a link of at most %d", len(s), MaxURLBytes))
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		v.fail(field, fmt.Sprintf("%q is not a link: give the quote's full address, starting https://", truncate(s, 60)))
	default:
		return s
	}
	return ""
}

// example suggests the ISO form of a date written D/M/YYYY or D.M.YYYY, the
// common mistake, and 2027-05-31 otherwise.
func example(s string) string {
	if d, ok := parseDate(s, DateDMY); ok {
		return d.String()
	}
	return "2027-05-31"
}

func (v *validator) count(field string) *int {
	s := v.text(field)
	if s == "" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || s[0] == '+' {
		v.fail(field, fmt.Sprintf("%q is not a number of seats: use a whole number of 0 or more, e.g. 25", truncate(s, 40)))
		return nil
	}
	return &n
}

func (v *validator) email(field string) string {
	s := v.text(field)
	if s == "" {
		return ""
	}
	if reason := checkEmail(s); reason != "" {
		v.fail(field, reason)
		return ""
	}
	return s
}

func (v *validator) emails(field string) []string {
	s := v.text(field)
	if s == "" {
		return nil
	}
	var out []string
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if reason := checkEmail(part); reason != "" {
			v.fail(field, reason+" (separate addresses with ;)")
			return nil
		}
		out = append(out, part)
	}
	return out
}

// checkEmail returns why s is not exactly one bare email address, or "".
func checkEmail(s string) string {
	bad := func(why string) string {
		return fmt.Sprintf("%q is not an email address: %s", truncate(s, 60), why)
	}
	if len(s) > MaxEmailBytes {
		return bad(fmt.Sprintf("it is %d bytes long, and an address is at most %d", len(s), MaxEmailBytes))
	}
	if strings.ContainsAny(s, ",;") {
		return bad("give exactly one address, such as jane@example.com")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return bad("give one address such as jane@example.com")
	}
	if a.Name != "" || a.Address != s {
		return bad("give the bare address alone, such as jane@example.com, with no name, brackets or comments")
	}
	// A domain without a dot (ann@acme, jane@localhost) names no host on
	// the internet: mail to it bounces, or goes to the relay's own network.
	at := strings.LastIndexByte(s, '@')
	if domain := s[at+1:]; !strings.Contains(domain, ".") {
		example := s[:at] + "@" + domain + ".com"
		if strings.EqualFold(domain, "localhost") || len(example) > 60 {
			example = "jane@example.com"
		}
		return bad(fmt.Sprintf("the domain %q has no dot, so no mail can reach it on the internet: give the full domain, such as %s", truncate(domain, 40), example))
	}
	return ""
}

// ValidateJSON validates one subscription given as a JSON object with the
// import's field names, as the PUT API and the CRM ingest subject receive
// it: keys are matched case-insensitively, strings and numbers are both
// accepted, null is absent, unknown keys are ignored. It applies the same
// rules as an import row (see Validate) and the same MaxRowBytes limit, and
// returns the reasons, one per field, with Field "" for the object as a
// whole. The subscription is only meaningful when there are none.
func ValidateJSON(b []byte) (subscription.Subscription, []FieldError) {
	rd := Reader{unknown: map[string]bool{}, fields: map[string]string{}, named: map[string]bool{}}
	b = bytes.TrimSpace(b)
	var rec Record
	if len(b) > MaxRowBytes {
		rec.Problems, rec.Partial = []FieldError{{Reason: tooLong("object")}}, true
	} else {
		rec.Problems, rec.Partial = rd.object(b)
	}
	sub, errs := Validate(rd.fields)
	return sub, merge(rec, errs)
}
