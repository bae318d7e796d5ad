package subscription

import (
	"math/rand/v2"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// at returns the instant of a local wall-clock time in loc.
func at(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDaysLeftAcrossZonesAndDST(t *testing.T) {
	utc := time.UTC
	tests := []struct {
		name string
		zone string // the subscription's zone; "" uses the default (UTC)
		now  func(t *testing.T) time.Time
		end  string
		want int
	}{
		// Europe/London springs forward 2027-03-28 01:00 -> 02:00 (a 23-hour day).
		{"london spring-forward day, just after midnight", "Europe/London",
			func(t *testing.T) time.Time { return at(t, mustLoc(t, "Europe/London"), "2027-03-28 00:30") }, "2027-04-27", 30},
		{"london spring-forward day, late evening", "Europe/London",
			func(t *testing.T) time.Time { return at(t, mustLoc(t, "Europe/London"), "2027-03-28 23:30") }, "2027-04-27", 30},
		// Europe/London falls back 2027-10-31 02:00 -> 01:00 (a 25-hour day).
		{"london fall-back day, 01:30 the second time", "Europe/London",
			func(t *testing.T) time.Time {
				return at(t, mustLoc(t, "Europe/London"), "2027-10-31 01:30").Add(time.Hour)
			}, "2027-12-15", 45},
		{"london fall-back day, 23:59", "Europe/London",
			func(t *testing.T) time.Time { return at(t, mustLoc(t, "Europe/London"), "2027-10-31 23:59") }, "2027-12-15", 45},
		// America/Los_Angeles springs forward 2027-03-14 and falls back 2027-11-07.
		{"los angeles spring-forward day, 03:30", "America/Los_Angeles",
			func(t *testing.T) time.Time { return at(t, mustLoc(t, "America/Los_Angeles"), "2027-03-14 03:30") }, "2027-06-12", 90},
		{"los angeles fall-back day, 23:30", "America/Los_Angeles",
			func(t *testing.T) time.Time { return at(t, mustLoc(t, "America/Los_Angeles"), "2027-11-07 23:30") }, "2027-12-07", 30},
		// 23:30 in Los Angeles is already the next day in UTC: the subscription's zone decides.
		{"los angeles evening is next day in UTC", "America/Los_Angeles",
			func(t *testing.T) time.Time { return at(t, mustLoc(t, "America/Los_Angeles"), "2027-01-01 23:30") }, "2027-01-31", 30},
		{"same instant reckoned in the default UTC", "",
			func(t *testing.T) time.Time { return at(t, mustLoc(t, "America/Los_Angeles"), "2027-01-01 23:30") }, "2027-01-31", 29},
		// Leap days and month ends.
		{"end on Feb 29", "", func(t *testing.T) time.Time { return at(t, utc, "2028-01-30 12:00") }, "2028-02-29", 30},
		{"45 days before Feb 29", "", func(t *testing.T) time.Time { return at(t, utc, "2028-01-15 00:00") }, "2028-02-29", 45},
		{"end on Jan 31, 30 days before", "", func(t *testing.T) time.Time { return at(t, utc, "2027-01-01 08:00") }, "2027-01-31", 30},
		{"end on Mar 31 across Feb", "", func(t *testing.T) time.Time { return at(t, utc, "2027-02-14 08:00") }, "2027-03-31", 45},
		{"end on Dec 31 across the year", "", func(t *testing.T) time.Time { return at(t, utc, "2026-10-02 08:00") }, "2026-12-31", 90},
		// Zones at the ends of the clock.
		{"UTC+14 is a day ahead", "Pacific/Kiritimati", func(t *testing.T) time.Time { return at(t, utc, "2027-01-01 12:00") }, "2027-01-31", 29},
		{"UTC-12 is a day behind", "Etc/GMT+12", func(t *testing.T) time.Time { return at(t, utc, "2027-01-01 11:00") }, "2027-01-31", 31},
		{"end date itself", "", func(t *testing.T) time.Time { return at(t, utc, "2027-01-31 23:59") }, "2027-01-31", 0},
		{"day after end date", "", func(t *testing.T) time.Time { return at(t, utc, "2027-02-01 00:00") }, "2027-01-31", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Subscription{ID: "1", EndDate: MustDate(tt.end), Timezone: tt.zone}
			if got := s.DaysLeft(tt.now(t), utc); got != tt.want {
				t.Errorf("DaysLeft = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDue(t *testing.T) {
	ms := DefaultMilestones
	end := MustDate("2027-03-31")
	sentSet := func(keys ...NoticeKey) func(NoticeKey) bool {
		return func(k NoticeKey) bool {
			for _, s := range keys {
				if s == k {
					return true
				}
			}
			return false
		}
	}
	key := func(m int) NoticeKey { return NoticeKey{"110001234567", end, m} }
	tests := []struct {
		name     string
		status   Status
		daysLeft int
		sent     func(NoticeKey) bool
		want     int // milestone due; 0 for none
	}{
		{"before the window", StatusActive, 91, nil, 0},
		{"90 days: the 90-day notice", StatusActive, 90, nil, 90},
		{"first seen 60 days out: the 90-day notice at once", StatusActive, 60, nil, 90},
		{"60 days out, 90 sent: nothing", StatusActive, 60, sentSet(key(90)), 0},
		{"45 days: the 45-day notice", StatusActive, 45, sentSet(key(90)), 45},
		{"first seen 40 days out: only the 45-day notice, not the 90", StatusActive, 40, nil, 45},
		{"31 days, 45 sent", StatusActive, 31, sentSet(key(90), key(45)), 0},
		{"30 days: the 30-day notice", StatusActive, 30, sentSet(key(90), key(45)), 30},
		{"first seen 12 days out: only the 30-day notice", StatusActive, 12, nil, 30},
		{"end date itself, 30 not yet sent", StatusActive, 0, nil, 30},
		{"after the end date: nothing", StatusActive, -1, nil, 0},
		{"30 sent: nothing more", StatusActive, 10, sentSet(key(30)), 0},
		{"empty status counts as active", "", 45, nil, 45},
		{"cancelled at 90", StatusCancelled, 90, nil, 0},
		{"cancelled at 45", StatusCancelled, 45, nil, 0},
		{"cancelled at 30", StatusCancelled, 30, nil, 0},
		{"renewal in progress at 90", StatusRenewalInProgress, 90, nil, 0},
		{"renewal in progress at 45", StatusRenewalInProgress, 45, nil, 0},
		{"renewal in progress at 30", StatusRenewalInProgress, 30, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Subscription{ID: "110001234567", EndDate: end, Status: tt.status}
			n, ok := Due(s, tt.daysLeft, ms, tt.sent)
			if tt.want == 0 {
				if ok {
					t.Fatalf("Due = %v, want nothing due", n.Key)
				}
				return
			}
			if !ok || n.Key != key(tt.want) || n.DaysLeft != tt.daysLeft {
				t.Fatalf("Due = %v %v, want %v", n, ok, key(tt.want))
			}
		})
	}
}

func TestRenewalStartsANewTerm(t *testing.T) {
	ms := DefaultMilestones
	old := Subscription{ID: "7", EndDate: MustDate("2027-03-31"), Status: StatusActive}
	sent := map[NoticeKey]bool{{"7", old.EndDate, 90}: true, {"7", old.EndDate, 45}: true, {"7", old.EndDate, 30}: true}
	today := MustDate("2027-03-10")
	if _, ok := Due(old, today.DaysUntil(old.EndDate), ms, func(k NoticeKey) bool { return sent[k] }); ok {
		t.Fatal("old term: nothing should be due after its 30-day notice")
	}
	renewed := old
	renewed.EndDate = MustDate("2028-03-31")
	// A year out: nothing yet for the new term.
	if n, ok := Due(renewed, today.DaysUntil(renewed.EndDate), ms, func(k NoticeKey) bool { return sent[k] }); ok {
		t.Fatalf("new term a year out: got %v due", n.Key)
	}
	day := MustDate("2028-01-01")
	n, ok := Due(renewed, day.DaysUntil(renewed.EndDate), ms, func(k NoticeKey) bool { return sent[k] })
	if !ok || n.Key != (NoticeKey{"7", renewed.EndDate, 90}) {
		t.Fatalf("new term 90 days out: got %v %v, want its own 90-day notice", n.Key, ok)
	}
}

func TestNoticeKeyRoundTrip(t *testing.T) {
	k := NoticeKey{"110001234567", MustDate("2027-03-31"), 45}
	if got, want := k.String(), "110001234567:2027-03-31:45"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	back, err := ParseNoticeKey(k.String())
	if err != nil || back != k {
		t.Fatalf("ParseNoticeKey = %v, %v", back, err)
	}
	for _, bad := range []string{"", "a:b", "x y:2027-03-31:45", "1:31/03/2027:45", "1:2027-03-31:0", "1:2027-03-31:x"} {
		if _, err := ParseNoticeKey(bad); err == nil {
			t.Errorf("ParseNoticeKey(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseDateSaysWhatToDo(t *testing.T) {
	_, err := ParseDate("31/05/2027")
	if err == nil || err.Error() != `"31/05/2027" is not a date: use YYYY-MM-DD, e.g. 2027-05-31` {
		t.Fatalf("err = %v", err)
	}
	for _, bad := range []string{"2027-02-29", "2027-13-01", "2027-1-01", "20270101", " 2027-01-01"} {
		if _, err := ParseDate(bad); err == nil {
			t.Errorf("ParseDate(%q) succeeded", bad)
		}
	}
	if d := MustDate("2028-02-29"); d.AddDays(1) != MustDate("2028-03-01") || d.Ordinal() != DateFromOrdinal(d.Ordinal()).Ordinal() {
		t.Fatal("leap-day arithmetic")
	}
}

func TestParseMilestones(t *testing.T) {
	ms, err := ParseMilestones("30, 90,45,45")
	if err != nil || ms.String() != "90,45,30" || ms.Max() != 90 {
		t.Fatalf("ParseMilestones = %v, %v", ms, err)
	}
	for _, bad := range []string{"", "90,,30", "0", "-5", "x"} {
		if _, err := ParseMilestones(bad); err == nil {
			t.Errorf("ParseMilestones(%q) succeeded", bad)
		}
	}
}

// TestDueProperties simulates random portfolios under random pass schedules:
// each subscription gets at most one notice per milestone per term and none
// after its end date; and when passes run at least every 14 days, every active
// subscription gets its 30-day notice before its end date.
func TestDueProperties(t *testing.T) {
	ms := DefaultMilestones
	zones := []string{"", "Europe/London", "America/Los_Angeles", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata"}
	statuses := []Status{StatusActive, StatusActive, StatusActive, StatusCancelled, StatusRenewalInProgress}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		start := MustDate("2027-01-01")
		portfolio := make([]Subscription, 50)
		for i := range portfolio {
			portfolio[i] = Subscription{
				ID:       string(rune('a'+i%26)) + string(rune('a'+i/26)),
				EndDate:  start.AddDays(r.IntN(400)),
				Status:   statuses[r.IntN(len(statuses))],
				Timezone: zones[r.IntN(len(zones))],
			}
		}
		maxGap := 20
		dense := seed%2 == 0
		if dense {
			maxGap = 14
		}
		sent := map[NoticeKey]Date{}
		count := map[NoticeKey]int{}
		for day := start; day.Before(start.AddDays(420)); day = day.AddDays(1 + r.IntN(maxGap)) {
			// The pass runs at a random time of day, in UTC.
			now := time.Date(day.Year, day.Month, day.Day, r.IntN(24), r.IntN(60), 0, 0, time.UTC)
			for _, s := range portfolio {
				n, ok := Due(s, s.DaysLeft(now, time.UTC), ms, func(k NoticeKey) bool { _, ok := sent[k]; return ok })
				if !ok {
					continue
				}
				count[n.Key]++
				sent[n.Key] = Today(now, s.Location(time.UTC))
			}
		}
		for k, c := range count {
			if c != 1 {
				t.Fatalf("seed %d: %v sent %d times", seed, k, c)
			}
			if on := sent[k]; on.After(k.EndDate) {
				t.Fatalf("seed %d: %v sent on %v, after its end date", seed, k, on)
			}
		}
		if !dense {
			continue
		}
		for _, s := range portfolio {
			if s.EndDate.Before(start.AddDays(2)) {
				continue // may have ended, in a zone ahead of UTC, before the first pass
			}
			k := NoticeKey{s.ID, s.EndDate, 30}
			_, got := sent[k]
			if want := s.Status == StatusActive; got != want {
				t.Fatalf("seed %d: %s (%s, ends %v): 30-day notice sent = %v, want %v", seed, s.ID, s.Status, s.EndDate, got, want)
			}
		}
	}
}
