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
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Date{}, fmt.Errorf("%q is not a date: use YYYY-MM-DD, e.g. 2027-05-31", s)
	}
	return DateOf(t), nil
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

// String formats d as YYYY-MM-DD (time.DateOnly), or "" for the zero Date.
// A Date that is not a calendar day, such as February 30, is written as the
// day time.Date makes of it.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.midnightUTC().Format(time.DateOnly)
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
