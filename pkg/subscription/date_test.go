package subscription

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDateStringMatchesSprintf holds the hand-written formatting of dates and
// notice keys to what fmt and strconv write, in range and out of it.
func TestDateStringMatchesSprintf(t *testing.T) {
	for _, y := range []int{-10000, -1, 0, 1, 9, 10, 99, 100, 999, 1000, 2027, 9999, 10000, 123456} {
		for _, m := range []time.Month{-1, 0, 1, 9, 10, 12, 13, 99, 100} {
			for _, d := range []int{-1, 0, 1, 9, 10, 31, 99, 100} {
				date := Date{Year: y, Month: m, Day: d}
				want := fmt.Sprintf("%04d-%02d-%02d", y, m, d)
				if date.IsZero() {
					want = ""
				}
				if got := date.String(); got != want {
					t.Fatalf("Date%+v.String() = %q, want %q", date, got, want)
				}
				for _, ms := range []int{-5, 0, 30, 90, 12345} {
					k := NoticeKey{SubscriptionID: "110001234567", EndDate: date, Milestone: ms}
					if got, want := k.String(), k.SubscriptionID+":"+want+":"+strconv.Itoa(ms); got != want {
						t.Fatalf("NoticeKey%+v.String() = %q, want %q", k, got, want)
					}
				}
			}
		}
	}
}

// TestParseDateMatchesTimeParse holds ParseDate's fast path to
// time.Parse(time.DateOnly): every day of several years, leap days and
// near misses.
func TestParseDateMatchesTimeParse(t *testing.T) {
	texts := []string{"", "2027-02-29", "2028-02-29", "1900-02-29", "2000-02-29", "0000-01-01", "9999-12-31", "2027-04-31",
		"2027-13-01", "2027-00-10", "2027-01-00", "2027-1-01", "27-01-01", "2027/01/01", "2027-01-01 ", " 2027-01-01", "+027-01-01", "2027-0a-01", "20270-01-1"}
	for d := time.Date(1999, 12, 25, 0, 0, 0, 0, time.UTC); d.Year() < 2030; d = d.AddDate(0, 0, 1) {
		texts = append(texts, d.Format(time.DateOnly))
	}
	for _, s := range texts {
		got, err := ParseDate(s)
		tt, terr := time.Parse(time.DateOnly, s)
		if (err != nil) != (terr != nil) || err == nil && got != DateOf(tt) {
			t.Fatalf("ParseDate(%q) = %v, %v; time.Parse: %v, %v", s, got, err, tt, terr)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"1", "110001234567", "abc-DEF_123", strings.Repeat("9", 64)} {
		if err := ValidID(id); err != nil {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", strings.Repeat("9", 65), "a b", "a:b", "a.b", "a/b", "ü", "a\n"} {
		if ValidID(id) == nil {
			t.Errorf("ValidID(%q) accepted it", id)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "",
		"Renewal due":                     "Renewal due",
		" Renewal\r\nBcc: x@example.com ": "Renewal Bcc: x@example.com",
		"a\t\tb\u0085c\u00a0d":            "a b c d",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
