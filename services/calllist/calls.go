package calllist

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

// Callback: a promised callback is due today or was missed; it ranks above
// everything else.
const Callback Category = "callback"

// CallState is one recorded call as the call list keeps it: the outcome
// and dates only, never the note or the caller.
type CallState struct {
	CallID     string                   `json:"call_id"`
	EndDate    subscription.Date        `json:"end_date"`
	On         subscription.Date        `json:"called_on"`
	Outcome    subscription.CallOutcome `json:"outcome"`
	CallbackOn subscription.Date        `json:"callback_on,omitzero"`
	Seats      *int                     `json:"seats,omitempty"`
	At         time.Time                `json:"at"`
}

// LastCall is the latest call of the current term, on the list.
type LastCall struct {
	On         subscription.Date        `json:"called_on"`
	Outcome    subscription.CallOutcome `json:"outcome"`
	CallbackOn subscription.Date        `json:"callback_on,omitzero"`
	At         time.Time                `json:"at"`
}

// maxCalls bounds the calls a State keeps.
const maxCalls = 8

// applyCall records a call in s; the same call again changes nothing.
func (s *State) applyCall(c CallState) {
	if slices.ContainsFunc(s.Calls, func(o CallState) bool { return o.CallID == c.CallID }) {
		return
	}
	s.Calls = append(s.Calls, c)
	slices.SortFunc(s.Calls, func(a, b CallState) int { return cmp.Compare(a.CallID, b.CallID) })
	if len(s.Calls) > maxCalls {
		s.Calls = s.Calls[len(s.Calls)-maxCalls:]
	}
}

func callStateOf(d event.CallRecorded, at time.Time) CallState {
	return CallState{CallID: d.CallID, EndDate: d.EndDate, On: d.CalledOn, Outcome: d.Outcome, CallbackOn: d.CallbackOn, Seats: d.Seats, At: at}
}

// lastCall returns the latest call of the subscription's current term in
// st, or nil.
func lastCall(st *State, sub subscription.Subscription) *CallState {
	if st == nil {
		return nil
	}
	for i := len(st.Calls) - 1; i >= 0; i-- {
		if st.Calls[i].EndDate == sub.EndDate {
			return &st.Calls[i]
		}
	}
	return nil
}

// applyCalls brings the latest call of the term into e: it hides the entry
// while a callback is pending (returning false), puts a due or missed
// callback first, a wrong contact among the unreachable, and shows the
// seats wanted for the next term.
func (r Rules) applyCalls(e *Entry, st *State, sub subscription.Subscription, today subscription.Date) bool {
	c := lastCall(st, sub)
	if c == nil {
		return true
	}
	e.LastCall = &LastCall{On: c.On, Outcome: c.Outcome, CallbackOn: c.CallbackOn, At: c.At}
	for i := len(st.Calls) - 1; i >= 0; i-- {
		if x := st.Calls[i]; x.EndDate == sub.EndDate && x.Outcome == subscription.CallSeatsChanged && x.Seats != nil {
			n := *x.Seats
			e.NextTermSeats = &n
			break
		}
	}
	switch c.Outcome {
	case subscription.CallCallback:
		late := c.CallbackOn.DaysUntil(today)
		switch {
		case late < 0:
			return false
		case late == 0:
			e.Category, e.Reason = Callback, "callback due today"
		default:
			e.Category, e.Reason = Callback, "callback missed: it was due "+plural(late, "day")+" ago, on "+c.CallbackOn.String()
		}
	case subscription.CallWrongContact:
		if e.Category != Unreachable {
			e.Category, e.Reason = Unreachable, fmt.Sprintf("wrong contact (call of %s): the contract manager must be changed", c.On)
		}
	}
	return true
}

// lapsedDays is how long after its end date a subscription stays on the
// list: RENEWALS_GRACE_DAYS. The post-expiry stages only label it; a grace
// shorter than the last stage drops it before the vendor cancels it.
func (r Rules) lapsedDays() int { return r.GraceDays }

// postExpiry fills a lapsed entry's stage and last day to renew (its
// reason stays "lapsed N days ago", and says when it can no longer be
// renewed).
// Without stages (Rules built without them) a lapsed entry keeps its plain
// reason.
func (r Rules) postExpiry(e *Entry, days int) {
	if days >= 0 || len(r.PostExpiry) == 0 {
		return
	}
	e.Stage = r.PostExpiry.Stage(-days)
	if last := r.PostExpiry.LastDay(); last > 0 {
		d := e.EndDate.AddDays(last)
		e.RenewBy = &d
	}
	if e.Category == Lapsed && e.Stage == subscription.StageCancelled {
		e.Reason += "; cancelled: it can no longer be renewed, only bought anew"
	}
}
