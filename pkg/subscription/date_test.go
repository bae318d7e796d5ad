package subscription

import (
	"fmt"
	"strconv"
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
