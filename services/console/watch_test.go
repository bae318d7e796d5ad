package console

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// The overview lists the outcomes that need a person (failed,
// undeliverable, ambiguous), newest first, and none of the others.
func TestWatchListsWhatNeedsAPerson(t *testing.T) {
	nc, err := nats.Connect(testenv.NATS(t).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := &Console{Now: time.Now}
	stop, err := c.Watch(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	end := subscription.MustDate("2027-03-31")
	outcomes := []struct {
		subject   string
		outcome   subscription.Outcome
		ambiguous bool
	}{
		{event.SubjectSent, subscription.OutcomeSent, false},
		{event.SubjectFailed, subscription.OutcomeFailed, false},
		{event.SubjectSkipped, subscription.OutcomeSkipped, false},
		{event.SubjectSent, subscription.OutcomeSent, true},
		{event.SubjectUndeliverable, subscription.OutcomeUndeliverable, false},
	}
	for i, o := range outcomes {
		key := subscription.NoticeKey{SubscriptionID: "11000000000" + string(rune('0'+i)), EndDate: end, Milestone: 30}
		b, err := event.Encode(o.subject, key.String(), time.Now(), event.NoticeOutcome{NoticeKey: key, SubscriptionID: key.SubscriptionID, EndDate: end, Milestone: 30, Outcome: o.outcome, Ambiguous: o.ambiguous})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(o.subject, b); err != nil {
			t.Fatal(err)
		}
	}
	// One subscription reads the events in order: once the last is listed,
	// every one before it was read.
	deadline := time.Now().Add(10 * time.Second)
	var got []recentOutcome
	for {
		got = c.recent.list()
		if len(got) > 0 && got[0].Outcome == subscription.OutcomeUndeliverable || time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
	}
	var ids []string
	for _, o := range got {
		ids = append(ids, o.Key.SubscriptionID)
	}
	if want := []string{"110000000004", "110000000003", "110000000001"}; !slices.Equal(ids, want) {
		t.Errorf("listed %v, want %v (undeliverable, ambiguous, failed)", ids, want)
	}
	if len(got) > 1 && !got[1].Ambiguous {
		t.Errorf("the ambiguous send is listed as %+v", got[1])
	}
}
