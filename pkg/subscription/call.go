package subscription

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// CallOutcome is what came of a renewal call.
type CallOutcome string

// The outcomes of a call.
const (
	// CallNoAnswer: nobody answered; the subscription stays on the list.
	CallNoAnswer CallOutcome = "no_answer"
	// CallCallback: the customer asked to be called again on CallbackOn;
	// the call list hides the subscription until then.
	CallCallback CallOutcome = "callback"
	// CallRenewing: the customer is renewing; the status becomes
	// renewal_in_progress, so no further notice goes.
	CallRenewing CallOutcome = "renewing"
	// CallSeatsChanged: the customer wants Seats seats for the next term.
	CallSeatsChanged CallOutcome = "seats_changed"
	// CallNotRenewing: the customer will not renew, for Reason; the status
	// becomes cancelled.
	CallNotRenewing CallOutcome = "not_renewing"
	// CallWrongContact: the person reached is not the contract manager,
	// who must be changed with the vendor; the subscription stays on the
	// list as unreachable.
	CallWrongContact CallOutcome = "wrong_contact"
)

// CallOutcomes lists every outcome, in the order the help text gives them.
var CallOutcomes = []CallOutcome{CallNoAnswer, CallCallback, CallRenewing, CallSeatsChanged, CallNotRenewing, CallWrongContact}

// LostReasons are the reasons a not_renewing call can give. They are
// categories, never free text, so that the renewals report can count them
// and no personal detail hides in one; the details go in the sealed note.
var LostReasons = []string{"price", "budget", "competitor", "no_longer_needed", "company_closed", "merged", "other"}

// Call is one renewal call to a subscription's customer. Caller and Note
// are personal data: stores keep them sealed under the subscription's data
// key, and erasure takes them with it; they never reach a log or an event.
type Call struct {
	// ID orders the calls of one subscription: the time of recording in
	// nanoseconds, written in 20 digits.
	ID             string `json:"call_id"`
	SubscriptionID string `json:"subscription_id"`
	// EndDate is the end date of the term the call was about.
	EndDate Date `json:"end_date"`
	// At is when the call was recorded; On is the day the call was made
	// (today unless given).
	At      time.Time   `json:"at"`
	On      Date        `json:"called_on"`
	Outcome CallOutcome `json:"outcome"`
	// CallbackOn is the day to call again (callback only).
	CallbackOn Date `json:"callback_on,omitzero"`
	// Seats is the seat count wanted for the next term (seats_changed).
	Seats *int `json:"seats,omitempty"`
	// Reason is one of LostReasons (not_renewing only).
	Reason string `json:"reason,omitempty"`

	// Personal data, sealed at rest.
	Caller string `json:"caller,omitempty"`
	Note   string `json:"note,omitempty"`
}

// MaxNoteBytes bounds a call's note.
const MaxNoteBytes = 4000

// Validate checks the call's outcome and the fields it needs, with one plain
// sentence saying what to send instead.
func (c Call) Validate() error {
	if !slices.Contains(CallOutcomes, c.Outcome) {
		return fmt.Errorf("outcome %q is not a call outcome: use one of %s", truncate(string(c.Outcome), 40), joinOutcomes())
	}
	switch {
	case c.Outcome == CallCallback && c.CallbackOn.IsZero():
		return fmt.Errorf("a callback needs its date: give callback_on as YYYY-MM-DD")
	case c.Outcome != CallCallback && !c.CallbackOn.IsZero():
		return fmt.Errorf("callback_on is only for the outcome callback: leave it out, or use outcome callback")
	case c.Outcome == CallCallback && !c.On.IsZero() && c.CallbackOn.Before(c.On):
		return fmt.Errorf("callback_on %s is before the day of the call %s: give a later date", c.CallbackOn, c.On)
	case c.Outcome == CallSeatsChanged && (c.Seats == nil || *c.Seats < 1):
		return fmt.Errorf("seats_changed needs the new seat count for the next term: give seats as a whole number, 1 or more")
	case c.Outcome != CallSeatsChanged && c.Seats != nil:
		return fmt.Errorf("seats is only for the outcome seats_changed: leave it out, or use outcome seats_changed")
	case c.Outcome == CallNotRenewing && !slices.Contains(LostReasons, c.Reason):
		return fmt.Errorf("not_renewing needs a reason: give reason as one of %s, and any detail in the note", strings.Join(LostReasons, ", "))
	case c.Outcome != CallNotRenewing && c.Reason != "":
		return fmt.Errorf("reason is only for the outcome not_renewing: put other detail in the note")
	case len(c.Note) > MaxNoteBytes:
		return fmt.Errorf("the note has %d bytes: keep it to %d", len(c.Note), MaxNoteBytes)
	case len(c.Caller) > 200:
		return fmt.Errorf("the caller's name has %d bytes: keep it to 200", len(c.Caller))
	}
	return nil
}

func joinOutcomes() string {
	s := make([]string, len(CallOutcomes))
	for i, o := range CallOutcomes {
		s[i] = string(o)
	}
	return strings.Join(s, ", ")
}

// CallID returns the ID of a call recorded at t: its Unix time in
// nanoseconds in 20 digits, so that IDs sort as times do.
func CallID(t time.Time) string { return fmt.Sprintf("%020d", t.UnixNano()) }

// RenewalFact records one renewal: a subscription whose term ending on
// TermEnded was replaced, on RenewedOn, by one ending on NewEndDate. It
// holds no personal data and outlives an erasure of the subscription, so
// that the renewals report still counts it.
type RenewalFact struct {
	SubscriptionID string `json:"subscription_id"`
	TermEnded      Date   `json:"term_ended"`
	NewEndDate     Date   `json:"new_end_date"`
	RenewedOn      Date   `json:"renewed_on"`
	// Stage is where the old term stood when it was renewed: "before_end"
	// (on or before its end date), else a post-expiry stage such as
	// "expired", "suspended" or "cancelled".
	Stage string `json:"stage"`
}

// StageBeforeEnd is the RenewalFact stage of a renewal on or before the end
// date.
const StageBeforeEnd = "before_end"

// CompareFacts orders renewal facts by TermEnded, then subscription, then
// new end date.
func CompareFacts(a, b RenewalFact) int {
	if c := a.TermEnded.DaysUntil(b.TermEnded); c != 0 {
		return -c
	}
	if c := strings.Compare(a.SubscriptionID, b.SubscriptionID); c != 0 {
		return c
	}
	return -a.NewEndDate.DaysUntil(b.NewEndDate)
}
