package scheduler

import (
	"encoding/json"
	"testing"
	"time"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

// TestAppendDueEventMatchesEventNew holds the hand-written encoder to the
// bytes that event.New and json.Marshal make of the same event.
func TestAppendDueEventMatchesEventNew(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n    subscription.Notice
		asOf subscription.Date
		at   time.Time
	}{
		{subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45}, DaysLeft: 40},
			subscription.Date{}, time.Date(2027, 2, 14, 6, 0, 0, 0, time.UTC)},
		{subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: "a-b_C", EndDate: subscription.MustDate("2028-02-29"), Milestone: 90}, DaysLeft: 0},
			subscription.MustDate("2028-02-29"), time.Date(2028, 2, 29, 23, 59, 59, 123456789, tokyo)},
	} {
		got, err := appendDueEvent(nil, tt.n.Key.String(), tt.n, tt.asOf, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		var decoded event.NoticeDue
		e, err := event.Decode(got, &decoded)
		if err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		ev, err := event.New(event.SubjectDue(tt.n.Key.Milestone), tt.n.Key.String(), tt.at, event.NoticeDue{
			NoticeKey: tt.n.Key, SubscriptionID: tt.n.Key.SubscriptionID, EndDate: tt.n.Key.EndDate,
			Milestone: tt.n.Key.Milestone, DaysLeft: tt.n.DaysLeft, AsOf: tt.asOf,
		})
		if err != nil {
			t.Fatal(err)
		}
		ev.ID = e.ID
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("appendDueEvent:\n%s\nevent.New:\n%s", got, want)
		}
		if len(e.ID) != 32 {
			t.Errorf("id %q: want 32 hex digits", e.ID)
		}
	}
}
