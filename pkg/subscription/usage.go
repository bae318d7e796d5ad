package subscription

import "fmt"

// SeatUsage counts, for one subscription, the seats whose users have not
// used the product for a while, as the vendor's usage export told on AsOf.
// It holds counts only: no user's name, address or id.
type SeatUsage struct {
	// AsOf is the day the counts were reckoned for.
	AsOf Date `json:"as_of"`
	// Users is the number of user rows the export gave for the subscription.
	Users int `json:"users"`
	// Unused30, Unused60 and Unused90 count the users who have not used it
	// for at least 30, 60 and 90 days (never used counts as all three).
	Unused30 int `json:"unused_30"`
	Unused60 int `json:"unused_60"`
	Unused90 int `json:"unused_90"`
}

// UsageThresholds are the spans, in days, that SeatUsage counts.
var UsageThresholds = [...]int{30, 60, 90}

// Unused returns the count for the largest threshold with a count above
// zero, with that threshold, or false when no seat is unused for 30 days.
func (u SeatUsage) Unused() (count, days int, ok bool) {
	switch {
	case u.Unused90 > 0:
		return u.Unused90, 90, true
	case u.Unused60 > 0:
		return u.Unused60, 60, true
	case u.Unused30 > 0:
		return u.Unused30, 30, true
	}
	return 0, 0, false
}

// UsageLine says how many seats went unused, e.g. "3 of 10 seats unused for
// 60+ days" (the longest span with a count), or "" when none was unused for
// 30 days or there is no usage.
func (s Subscription) UsageLine() string {
	if s.Usage == nil {
		return ""
	}
	n, days, ok := s.Usage.Unused()
	if !ok {
		return ""
	}
	of := s.Usage.Users
	if s.Seats != nil {
		of = *s.Seats
	}
	return fmt.Sprintf("%d of %d %s unused for %d+ days", n, of, Plural(of, "seat", "seats"), days)
}

// KeepUsage returns s with old's seat usage when s carries none: an import
// or an edit of the subscription leaves the counts of the last usage import
// alone.
func KeepUsage(s Subscription, old *SeatUsage) Subscription {
	if s.Usage == nil && old != nil {
		u := *old
		s.Usage = &u
	}
	return s
}

// Plural is one when n is 1, else many: the word a count takes in a
// sentence ("1 row", "2 rows").
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
