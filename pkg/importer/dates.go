package importer

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"renewals/pkg/subscription"
)

// DateFormat is the order of day and month in an import's dates written
// with slashes. ISO dates (YYYY-MM-DD) and Excel serial dates are read
// whatever it says.
type DateFormat string

// The date formats. DateAuto tells the order from the file's own rows: a
// date such as 31/05/2027 can only be day first, 05/31/2027 only month
// first; a file in which every such date could be either (03/04/2027) is
// refused with a sentence that names --date-format.
const (
	DateAuto DateFormat = ""
	DateISO  DateFormat = "YYYY-MM-DD"
	DateDMY  DateFormat = "DD/MM/YYYY"
	DateMDY  DateFormat = "MM/DD/YYYY"
)

// ParseDateFormat reads a --date-format value: YYYY-MM-DD, DD/MM/YYYY or
// MM/DD/YYYY (in any case), or "" and "auto" for DateAuto. Anything else is
// a *FileError.
func ParseDateFormat(s string) (DateFormat, error) {
	switch f := DateFormat(strings.ToUpper(strings.TrimSpace(s))); f {
	case DateAuto, DateISO, DateDMY, DateMDY:
		return f, nil
	case "AUTO":
		return DateAuto, nil
	}
	return "", &FileError{Reason: fmt.Sprintf("%q is not a date format: use --date-format DD/MM/YYYY or MM/DD/YYYY (or YYYY-MM-DD)", truncate(s, 40))}
}

// dateFields are the fields that hold dates.
var dateFields = [...]string{"end_date", "start_date", "autorenew_date", "quote_expiry"}

// slashDate splits D/M/YYYY (or M/D/YYYY; '.' and '-' separate as well when
// the year comes last) into its two leading numbers and the year.
func slashDate(s string) (a, b, year int, ok bool) {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '/' || r == '.' || r == '-' })
	if len(f) != 3 || len(f[2]) != 4 || len(f[0]) > 2 || len(f[1]) > 2 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	a, err1 = strconv.Atoi(f[0])
	b, err2 = strconv.Atoi(f[1])
	year, err3 = strconv.Atoi(f[2])
	return a, b, year, err1 == nil && err2 == nil && err3 == nil && a >= 1 && b >= 1
}

// dateOrder tells the order of day and month in a file's dates written
// with slashes from the dates themselves: the first that can only be read
// one way (31/05/2027 day first, 05/31/2027 month first) decides it.
type dateOrder struct {
	format  DateFormat // as given, else DateAuto until a date decides
	example string     // the first date that could be read either way
}

// see notes one date and reports whether it has to wait for a later one to
// decide: it could be read day first or month first and mean two different
// days, and no date has decided yet.
func (o *dateOrder) see(s string) bool {
	s = strings.TrimSpace(s)
	a, b, _, ok := slashDate(s)
	switch {
	case !ok || a == b || o.format != DateAuto:
	case a > 12 && b <= 12:
		o.format = DateDMY
	case b > 12 && a <= 12:
		o.format = DateMDY
	case a <= 12 && b <= 12:
		o.example = cmp.Or(o.example, s)
		return true
	}
	return false
}

// excelEpoch is day 0 of Excel's serial dates (in its 1900 date system,
// whose day 60 is the 29 February 1900 that never was).
var excelEpoch = time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC)

// serialDate reads an Excel serial date ("46112", or "46112.5" with a time
// of day, which is dropped) from 1990 to 2099 (32874 to 73050): outside
// those years a number is more likely a mistake than a subscription's day.
func serialDate(s string) (subscription.Date, bool) {
	if s == "" || (s[0] < '0' || s[0] > '9') {
		return subscription.Date{}, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 32874 || f >= 73051 {
		return subscription.Date{}, false
	}
	return subscription.DateOf(excelEpoch.AddDate(0, 0, int(math.Floor(f)))), true
}

// parseDate reads a date in the import's forms: YYYY-MM-DD, an Excel
// serial date, or D/M/YYYY or M/D/YYYY as order says (DateAuto: only when
// the date is the same either way or only one way is a date).
func parseDate(s string, order DateFormat) (subscription.Date, bool) {
	if d, err := subscription.ParseDate(s); err == nil {
		return d, true
	}
	if d, ok := serialDate(s); ok {
		return d, true
	}
	a, b, year, ok := slashDate(s)
	if !ok {
		return subscription.Date{}, false
	}
	day, month := a, b
	switch {
	case order == DateMDY:
		day, month = b, a
	case order == DateDMY:
	case a == b || a > 12:
	case b > 12:
		day, month = b, a
	default:
		return subscription.Date{}, false
	}
	d, err := subscription.ParseDate(fmt.Sprintf("%04d-%02d-%02d", year, month, day))
	return d, err == nil
}

// undecided is the sentence for a file whose rows do not decide the order:
// none did, or not within its first rows (when rows is not 0).
func (o *dateOrder) undecided(rows int) *FileError {
	a, b, year, _ := slashDate(o.example)
	dmy := time.Date(year, time.Month(b), a, 0, 0, 0, 0, time.UTC).Format("2 January 2006")
	mdy := time.Date(year, time.Month(a), b, 0, 0, 0, 0, time.UTC).Format("2 January 2006")
	what := "its dates"
	if rows > 0 {
		what = fmt.Sprintf("the dates of its first %d rows", rows)
	}
	return &FileError{Reason: fmt.Sprintf("the file does not tell whether its dates are day first or month first (%s could be %s or %s, and %s fit either): import it again with --date-format DD/MM/YYYY or --date-format MM/DD/YYYY",
		truncate(o.example, 20), dmy, mdy, what)}
}
