package calllist

import (
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

func TestBuildWithCallsAndStages(t *testing.T) {
	pe, err := subscription.ParsePostExpiry(subscription.DefaultPostExpiry)
	if err != nil {
		t.Fatal(err)
	}
	r := Rules{Milestones: subscription.DefaultMilestones, GraceDays: 30, Location: time.UTC, PostExpiry: pe}
	today := subscription.MustDate("2027-03-01")
	sub := func(days int) subscription.Subscription {
		return subscription.Subscription{ID: "s", EndDate: today.AddDays(days), Status: subscription.StatusActive,
			ContractManager: subscription.Contact{Email: "cm@example.com"}}
	}
	call := func(s subscription.Subscription, id string, o subscription.CallOutcome, cb subscription.Date) CallState {
		return CallState{CallID: id, EndDate: s.EndDate, On: today.AddDays(-1), Outcome: o, CallbackOn: cb}
	}
	s := sub(20)
	cb := call(s, "01", subscription.CallCallback, today.AddDays(2))
	st := &State{Calls: []CallState{cb}}
	if _, on := r.Build(s, st, today); on {
		t.Errorf("a pending callback is on the list")
	}
	e, on := r.Build(s, st, today.AddDays(2))
	if !on || e.Category != Callback || e.Reason != "callback due today" || e.LastCall == nil || e.LastCall.CallbackOn != cb.CallbackOn {
		t.Errorf("on its day: %v %+v", on, e)
	}
	e, on = r.Build(s, st, today.AddDays(4))
	if !on || e.Category != Callback || !strings.Contains(e.Reason, "missed") {
		t.Errorf("two days late: %v %+v", on, e)
	}
	// A later call replaces the callback; a call of an earlier term counts not.
	old := call(subscription.Subscription{EndDate: s.EndDate.AddDays(-365)}, "03", subscription.CallWrongContact, subscription.Date{})
	st.applyCall(call(s, "02", subscription.CallNoAnswer, subscription.Date{}))
	st.applyCall(old)
	st.applyCall(old) // a redelivery
	if len(st.Calls) != 3 {
		t.Fatalf("calls kept: %d, want 3", len(st.Calls))
	}
	e, on = r.Build(s, st, today)
	if !on || e.Category != Expiring || e.LastCall.Outcome != subscription.CallNoAnswer {
		t.Errorf("after a no-answer call: %v %+v", on, e)
	}
	st.applyCall(call(s, "04", subscription.CallWrongContact, subscription.Date{}))
	seats := 12
	sc := call(s, "05", subscription.CallSeatsChanged, subscription.Date{})
	sc.Seats = &seats
	st.applyCall(sc)
	e, _ = r.Build(s, st, today)
	if e.NextTermSeats == nil || *e.NextTermSeats != 12 || e.LastCall.Outcome != subscription.CallSeatsChanged {
		t.Errorf("seats_changed: %+v", e)
	}
	st = &State{Calls: []CallState{call(s, "06", subscription.CallWrongContact, subscription.Date{})}}
	e, _ = r.Build(s, st, today)
	if e.Category != Unreachable || !strings.Contains(e.Reason, "wrong contact") {
		t.Errorf("wrong_contact: %+v", e)
	}

	// After the end date: the vendor's stages, and the last day to renew.
	r.GraceDays = 45
	for _, c := range []struct {
		days  int
		stage string
		on    bool
	}{{-1, "expired", true}, {-15, "expired", true}, {-16, "suspended", true}, {-45, "suspended", true}, {-46, "", false}} {
		e, on := r.Build(sub(c.days), nil, today)
		if on != c.on || (on && (e.Stage != c.stage || e.RenewBy == nil || *e.RenewBy != today.AddDays(c.days+45))) {
			t.Errorf("%d days: on %v stage %q renew by %v, want on %v stage %q", c.days, on, e.Stage, e.RenewBy, c.on, c.stage)
		}
	}
	r.GraceDays = 60
	if e, on := r.Build(sub(-50), nil, today); !on || e.Stage != subscription.StageCancelled || e.Reason != "lapsed 50 days ago; cancelled: it can no longer be renewed, only bought anew" {
		t.Errorf("50 days after, grace 60: %v %+v", on, e)
	}

	// Ranking: a callback above the unreachable and the lapsed.
	es := []Entry{
		{SubscriptionID: "a", Category: Unreachable, DaysLeft: 3},
		{SubscriptionID: "b", Category: Callback, DaysLeft: 40},
		{SubscriptionID: "c", Category: Lapsed, DaysLeft: -2},
	}
	Sort(es)
	if es[0].SubscriptionID != "b" {
		t.Errorf("rank 1 is %s, want the callback", es[0].SubscriptionID)
	}
}
