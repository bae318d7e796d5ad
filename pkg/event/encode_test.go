package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

func checkOutcome(t *testing.T, o NoticeOutcome) {
	t.Helper()
	want, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendOutcome([]byte("x"), &o); !bytes.Equal(got[1:], want) {
		t.Fatalf("appendOutcome:\n got %s\nwant %s", got[1:], want)
	}
	for _, data := range []any{o, &o} {
		ev, err := New(OutcomeSubject(o.Outcome), "s", time.Unix(0, 0), data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Data, want) {
			t.Fatalf("New's data:\n got %s\nwant %s", ev.Data, want)
		}
	}
}

var odd = "a\"b\\c<d>e&f\x00\x01\x1f\b\f\n\r\t\u2028\u2029\x7f é 日本 \xff\xfe\xed\xa0\x80 end"

func TestAppendOutcomeMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	texts := append(strs, odd, "retries exhausted: dial tcp 127.0.0.1:25: connect: connection refused")
	dates := []subscription.Date{{}, subscription.MustDate("2027-03-31"), {Year: 12345, Month: 13, Day: 100}, {Year: -5, Month: 1, Day: 2}, {Day: 1}, {Year: 9999, Month: 99, Day: 99}, {Year: 10000}}
	outcomes := []subscription.Outcome{subscription.OutcomeSent, subscription.OutcomeSkipped, subscription.OutcomeFailed, subscription.OutcomeUndeliverable, "", subscription.Outcome(odd)}
	for range 5000 {
		pick := func() string { return texts[r.IntN(len(texts))] }
		k := subscription.NoticeKey{SubscriptionID: pick(), EndDate: dates[r.IntN(len(dates))], Milestone: randInt(r)}
		if r.IntN(3) == 0 {
			k.EndDate = randDate(r)
		}
		checkOutcome(t, NoticeOutcome{
			NoticeKey: k, SubscriptionID: pick(), EndDate: randDate(r), Milestone: randInt(r), Outcome: outcomes[r.IntN(len(outcomes))],
			Reason: pick(), Role: subscription.Role(pick()), Attempts: randInt(r), Ambiguous: r.IntN(2) == 0,
		})
	}
	if ev, err := New(SubjectFailed, "s", time.Unix(0, 0), (*NoticeOutcome)(nil)); err != nil || string(ev.Data) != "null" {
		t.Fatalf("New of a nil *NoticeOutcome: %s, %v", ev.Data, err)
	}
}

func FuzzAppendOutcome(f *testing.F) {
	f.Add("110001234567", 2027, 3, 31, 45, "sent", odd, "contract_manager", 1, true)
	f.Fuzz(func(t *testing.T, id string, y, m, d, ms int, outcome, reason, role string, attempts int, ambiguous bool) {
		date := subscription.Date{Year: y, Month: time.Month(m), Day: d}
		checkOutcome(t, NoticeOutcome{
			NoticeKey: subscription.NoticeKey{SubscriptionID: id, EndDate: date, Milestone: ms}, SubscriptionID: id, EndDate: date,
			Milestone: ms, Outcome: subscription.Outcome(outcome), Reason: reason, Role: subscription.Role(role), Attempts: attempts, Ambiguous: ambiguous,
		})
	})
}
