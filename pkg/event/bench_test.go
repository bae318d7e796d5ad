package event_test

import (
	"encoding/json"
	"testing"
	"time"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

func dueEventBytes(tb testing.TB) []byte {
	tb.Helper()
	k := subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45}
	ev, err := event.New(event.SubjectDue(45), k.String(), time.Date(2027, 2, 14, 8, 30, 1, 123456789, time.UTC), event.NoticeDue{
		NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: 45, DaysLeft: 45,
		AsOf: subscription.MustDate("2027-02-14"),
	})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkDecodeDue measures what reading a due event costs the notifier
// per notice.
func BenchmarkDecodeDue(b *testing.B) {
	raw := dueEventBytes(b)
	b.ReportAllocs()
	for b.Loop() {
		var due event.NoticeDue
		if _, err := event.Decode(raw, &due); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewOutcome measures building an outcome event and encoding it as
// natsbus.Publish does.
func BenchmarkNewOutcome(b *testing.B) {
	k := subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45}
	at := time.Date(2027, 2, 14, 8, 30, 1, 123456789, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		ev, err := event.New(event.SubjectSent, k.String(), at, event.NoticeOutcome{
			NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: k.Milestone,
			Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, Attempts: 1,
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeOutcome measures encoding an outcome event in one pass, as
// the notifier publishes it.
func BenchmarkEncodeOutcome(b *testing.B) {
	k := subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45}
	at := time.Date(2027, 2, 14, 8, 30, 1, 123456789, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.Encode(event.SubjectSent, k.String(), at, event.NoticeOutcome{
			NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: k.Milestone,
			Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, Attempts: 1,
		}); err != nil {
			b.Fatal(err)
		}
	}
}
