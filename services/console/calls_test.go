package console

import (
	"testing"

	"renewals/pkg/subscription"
)

func TestResendable(t *testing.T) {
	end := subscription.MustDate("2027-01-10")
	sub := subscription.Subscription{ID: "110001000007", EndDate: end}
	key := subscription.NoticeKey{SubscriptionID: sub.ID, EndDate: end, Milestone: 45}
	for o, want := range map[subscription.Outcome]bool{
		subscription.OutcomeBounced: true, subscription.OutcomeFailed: true, subscription.OutcomeUndeliverable: true,
		subscription.OutcomeSent: false, subscription.OutcomeSkipped: false, "": false,
	} {
		if got := resendable(subscription.Entry{Key: key, Outcome: o}, sub); got != want {
			t.Errorf("%q notice of the current term: resendable %v, want %v", o, got, want)
		}
	}
	old := key
	old.EndDate = subscription.MustDate("2026-01-10")
	if resendable(subscription.Entry{Key: old, Outcome: subscription.OutcomeBounced}, sub) {
		t.Errorf("a bounced notice of an earlier term is offered for resend; the API refuses it")
	}
}

func TestRefusalWording(t *testing.T) {
	for in, want := range map[string]string{
		"a callback needs its date: give callback_on as YYYY-MM-DD":                          "A callback needs its date: choose the day to call back.",
		"callback_on 2026-11-01 is before the day of the call 2026-12-01: give a later date": "The callback date 2026-11-01 is before the day of the call 2026-12-01: give a later date.",
		"reason is only for the outcome not_renewing: put other detail in the note.":         "Reason is only for the outcome not_renewing: put other detail in the note.",
	} {
		if got := sentence(consoleWording.Replace(in)); got != want {
			t.Errorf("%q became %q, want %q", in, got, want)
		}
	}
}
