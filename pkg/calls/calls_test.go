package calls

import (
	"testing"
	"time"

	"renewals/pkg/subscription"
)

func TestRenewalsFromUpsertResults(t *testing.T) {
	pe, _ := subscription.ParsePostExpiry(subscription.DefaultPostExpiry)
	now := time.Date(2027, 3, 20, 12, 0, 0, 0, time.UTC)
	d := subscription.MustDate
	subs := []subscription.Subscription{
		{ID: "early", EndDate: d("2028-03-31")},
		{ID: "late", EndDate: d("2028-03-01")},
		{ID: "new", EndDate: d("2028-03-01")},
		{ID: "same", EndDate: d("2027-04-01")},
		{ID: "earlier", EndDate: d("2027-01-01")},
	}
	res := []subscription.UpsertResult{
		{Change: subscription.Updated, PreviousEndDate: d("2027-03-31")},
		{Change: subscription.Updated, PreviousEndDate: d("2027-03-01")}, // 19 days after: suspended
		{Change: subscription.Created},
		{Change: subscription.Updated, PreviousEndDate: d("2027-04-01")},
		{Change: subscription.Updated, PreviousEndDate: d("2027-02-01")},
	}
	got := Renewals(subs, res, now, time.UTC, pe)
	if len(got) != 2 {
		t.Fatalf("facts %+v, want 2", got)
	}
	if got[0].SubscriptionID != "early" || got[0].Stage != subscription.StageBeforeEnd || got[0].RenewedOn != d("2027-03-20") {
		t.Errorf("early: %+v", got[0])
	}
	if got[1].SubscriptionID != "late" || got[1].Stage != "suspended" || got[1].TermEnded != d("2027-03-01") || got[1].NewEndDate != d("2028-03-01") {
		t.Errorf("late: %+v", got[1])
	}
}

func TestCallValidation(t *testing.T) {
	seats := 12
	ok := []subscription.Call{
		{Outcome: subscription.CallNoAnswer},
		{Outcome: subscription.CallCallback, CallbackOn: subscription.MustDate("2027-03-02"), On: subscription.MustDate("2027-03-01")},
		{Outcome: subscription.CallSeatsChanged, Seats: &seats},
		{Outcome: subscription.CallNotRenewing, Reason: "price"},
		{Outcome: subscription.CallRenewing, Note: "PO on its way"},
		{Outcome: subscription.CallWrongContact},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []subscription.Call{
		{Outcome: "maybe"},
		{Outcome: subscription.CallCallback},
		{Outcome: subscription.CallCallback, CallbackOn: subscription.MustDate("2027-02-01"), On: subscription.MustDate("2027-03-01")},
		{Outcome: subscription.CallNoAnswer, CallbackOn: subscription.MustDate("2027-03-02")},
		{Outcome: subscription.CallSeatsChanged},
		{Outcome: subscription.CallNoAnswer, Seats: &seats},
		{Outcome: subscription.CallNotRenewing},
		{Outcome: subscription.CallNotRenewing, Reason: "they hate us"},
		{Outcome: subscription.CallRenewing, Reason: "price"},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v was accepted", c)
		}
	}
}
