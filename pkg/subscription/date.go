package subscription

import (
	"fmt"
	"time"
)

// Date is a calendar day with no time of day and no zone, as written in the
// reseller's data (ISO 8601 YYYY-MM-DD). The zero Date is "no date".
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// ParseDate parses an ISO 8601 calendar date (YYYY-MM-DD). Any other form,
// such as 31/05/2027, returns an error that tells the user which form to use.
func ParseDate(s string) (Date, error) {
	if d, ok := parseISO(s); ok {
		return d, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || len(s) != len(time.DateOnly) {
		return Date{}, fmt.Errorf("%q is not a date: use YYYY-MM-DD, e.g. 2027-05-31", s)
	}
	return DateOf(t), nil
}

// parseISO reads YYYY-MM-DD without time.Parse, accepting exactly the
// texts that time.Parse(time.DateOnly, ...) accepts; it reports false for
// any other, and ParseDate then lets time.Parse say what is wrong.
func parseISO(v string) (Date, bool) {
	if len(v) != 10 || v[4] != '-' || v[7] != '-' {
		return Date{}, false
	}
	n := 0
	for i, c := range []byte(v) {
		if i == 4 || i == 7 {
			continue
		}
		if c < '0' || c > '9' {
			return Date{}, false
		}
		n = n*10 + int(c-'0')
	}
	y, m, d := n/10000, time.Month(n/100%100), n%100
	if m < time.January || m > time.December || d < 1 || d > daysIn(m, y) {
		return Date{}, false
	}
	return Date{Year: y, Month: m, Day: d}, true
}

func daysIn(m time.Month, y int) int {
	if m == time.February {
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}

// MustDate is ParseDate for constants in tests and examples; it panics on a bad date.
func MustDate(s string) Date {
	d, err := ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

// DateOf returns the calendar day of t in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

// Today returns the calendar day that the instant now falls on in loc.
func Today(now time.Time, loc *time.Location) Date {
	return DateOf(now.In(loc))
}

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }

// String formats d as YYYY-MM-DD, or "" for the zero Date.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	var b [10]byte
	return string(d.appendISO(b[:0]))
}

// appendISO appends the date as fmt.Sprintf("%04d-%02d-%02d") writes it,
// without fmt for the usual years, months and days.
func (d Date) appendISO(b []byte) []byte {
	if d.Year < 0 || d.Year > 9999 || d.Month < 0 || d.Month > 99 || d.Day < 0 || d.Day > 99 {
		return fmt.Appendf(b, "%04d-%02d-%02d", d.Year, d.Month, d.Day)
	}
	y, m := d.Year, int(d.Month)
	return append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d.Day/10), byte('0'+d.Day%10))
}

// midnightUTC is the day's start in UTC: a zone-free anchor for day arithmetic,
// so a DST change can never make a day 23 or 25 hours long here.
func (d Date) midnightUTC() time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC)
}

// DaysUntil returns the number of calendar days from d to e: 1 when e is the
// day after d, negative when e is before d.
func (d Date) DaysUntil(e Date) int {
	return int(e.midnightUTC().Sub(d.midnightUTC()).Hours() / 24)
}

// AddDays returns the day n days after d (before it when n < 0).
func (d Date) AddDays(n int) Date {
	return DateOf(d.midnightUTC().AddDate(0, 0, n))
}

// Before reports whether d is an earlier day than e.
func (d Date) Before(e Date) bool { return d.DaysUntil(e) > 0 }

// After reports whether d is a later day than e.
func (d Date) After(e Date) bool { return d.DaysUntil(e) < 0 }

// Ordinal returns a number that orders dates: days since 1970-01-01.
// Stores use it as a sort key for the end-date index.
func (d Date) Ordinal() int64 {
	return d.midnightUTC().Unix() / 86400
}

// DateFromOrdinal is the inverse of Date.Ordinal.
func DateFromOrdinal(n int64) Date {
	return DateOf(time.Unix(n*86400, 0).UTC())
}

// MarshalText writes d as YYYY-MM-DD.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads YYYY-MM-DD; an empty text is the zero Date.
func (d *Date) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Date{}
		return nil
	}
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
