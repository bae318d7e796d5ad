package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"renewals/pkg/calls"
	"renewals/pkg/subscription"
)

// callForm is what a person typed into the "Record a call" form, kept in
// the session (never in a URL) when the call is refused, so that the page
// shows it again with the reason.
type callForm struct {
	Outcome, CallbackOn, Seats, Reason, Note string
}

// flash is what a post leaves for the page it redirects to: a sentence, and
// for a refused call what was typed. It lives in the session, read once.
type flash struct {
	subscriptionID string
	notice, err    string
	form           *callForm
}

func (ss *session) setFlash(f flash) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.flash = &f
}

// takeFlash returns the flash left for the subscription's page, and
// forgets it.
func (ss *session) takeFlash(id string) (flash, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.flash == nil || ss.flash.subscriptionID != id {
		return flash{}, false
	}
	f := *ss.flash
	ss.flash = nil
	return f, true
}

// callView is one call on the subscription page.
type callView struct {
	subscription.Call
	CurrentTerm bool
}

// callsSection is the subscription page's "Calls" section.
type callsSection struct {
	Enabled  bool
	List     []callView
	Err      string
	CanCall  bool
	Form     callForm
	Outcomes []subscription.CallOutcome
	Reasons  []string
	Today    string
}

// callOutcomeLabels are the outcomes as the form offers them.
var callOutcomeLabels = map[subscription.CallOutcome]string{
	subscription.CallNoAnswer:     "No answer",
	subscription.CallCallback:     "Call back later",
	subscription.CallRenewing:     "Renewing",
	subscription.CallSeatsChanged: "Renewing with other seats",
	subscription.CallNotRenewing:  "Not renewing",
	subscription.CallWrongContact: "Wrong contact",
}

func outcomeLabel(o subscription.CallOutcome) string {
	if l, ok := callOutcomeLabels[o]; ok {
		return l
	}
	return string(o)
}

// callsOf fills the calls section of the subscription page.
func (c *Console) callsOf(ctx context.Context, sub subscription.Subscription, ss *session, f *flash) callsSection {
	sec := callsSection{Enabled: c.Calls != nil, CanCall: ss.role == Operator && c.Calls != nil,
		Outcomes: subscription.CallOutcomes, Reasons: subscription.LostReasons, Today: c.today().String()}
	if f != nil && f.form != nil {
		sec.Form = *f.form
	}
	if c.Calls == nil {
		return sec
	}
	cs, err := c.Calls.List(ctx, sub.ID)
	if err != nil {
		c.Log.Warn("console calls", zap.Error(err))
		sec.Err = "The calls cannot be read now: try again in a minute."
		return sec
	}
	for _, call := range slices.Backward(cs) {
		sec.List = append(sec.List, callView{call, call.EndDate == sub.EndDate})
	}
	return sec
}

// consoleWording turns the API's field names in a refusal into the form's
// labels.
var consoleWording = strings.NewReplacer(
	"give callback_on as YYYY-MM-DD", "choose the day to call back",
	"callback_on", "the callback date",
	"give seats as a whole number", "give the seats as a whole number",
	"give reason as one of", "choose a reason:",
	"leave it out, or use outcome callback", "clear it, or choose the outcome callback",
	"leave it out, or use outcome seats_changed", "clear it, or choose the outcome seats_changed",
)

// recordCall is POST /subscriptions/{id}/calls (operators): the call goes
// through pkg/calls' Service, as POST /api/v1/subscriptions/{id}/calls
// does, and the answer is a 303 back to the subscription's page.
func (c *Console) recordCall(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	if subscription.ValidID(id) != nil {
		c.fail(w, r, ss, http.StatusNotFound, "That is not a subscription id: search for the subscription instead.")
		return
	}
	if c.Calls == nil {
		c.fail(w, r, ss, http.StatusServiceUnavailable, "This server does not record calls: use the api target with the call list on.")
		return
	}
	f := callForm{
		Outcome: strings.TrimSpace(r.PostForm.Get("outcome")), CallbackOn: strings.TrimSpace(r.PostForm.Get("callback_on")),
		Seats: strings.TrimSpace(r.PostForm.Get("seats")), Reason: strings.TrimSpace(r.PostForm.Get("reason")), Note: r.PostForm.Get("note"),
	}
	back := "/subscriptions/" + id + "#calls"
	refuse := func(msg string) {
		ss.setFlash(flash{subscriptionID: id, err: msg, form: &f})
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
	in := calls.Input{Outcome: subscription.CallOutcome(f.Outcome), Note: f.Note, Reason: f.Reason, Caller: ss.user}
	// The form sends every field; only the ones the outcome uses count,
	// so that a date left in a hidden field does not refuse the call.
	switch in.Outcome {
	case subscription.CallCallback:
		if f.CallbackOn == "" {
			refuse("A callback needs its date: choose the day to call back.")
			return
		}
		d, err := subscription.ParseDate(f.CallbackOn)
		if err != nil {
			refuse("The callback date: " + err.Error() + ".")
			return
		}
		in.CallbackOn = d
	case subscription.CallSeatsChanged:
		n, err := strconv.Atoi(f.Seats)
		if err != nil {
			refuse(fmt.Sprintf("Seats %q is not a whole number: give the seat count wanted for the next term, e.g. 25.", truncate(f.Seats, 20)))
			return
		}
		in.Seats = &n
	}
	if in.Outcome != subscription.CallNotRenewing {
		in.Reason = ""
	}
	_, err := c.Calls.Record(r.Context(), id, in)
	switch {
	case errors.Is(err, calls.ErrInvalid):
		msg := strings.TrimPrefix(err.Error(), calls.ErrInvalid.Error()+": ")
		refuse(sentence(consoleWording.Replace(msg)))
		return
	case errors.Is(err, subscription.ErrNotFound):
		c.fail(w, r, ss, http.StatusNotFound, fmt.Sprintf("There is no subscription %s: it may have been erased; search for it on the Subscriptions page.", id))
		return
	case err != nil:
		c.Log.Error("console call", zap.String("subscription_id", id), zap.Error(err))
		refuse("The call could not be recorded now: try again in a minute.")
		return
	}
	c.changed("", true) // the call list shows the call on the next view
	c.Log.Info("console call recorded", zap.String("subscription_id", id), zap.String("outcome", string(in.Outcome)), zap.String("role", string(ss.role)))
	ss.setFlash(flash{subscriptionID: id, notice: "The call is recorded: " + outcomeLabel(in.Outcome) + "."})
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// resend is POST /notices/{key}/resend (operators): the same resend as
// POST /api/v1/notices/{key}/resend, then a 303 back to the subscription.
func (c *Console) resend(w http.ResponseWriter, r *http.Request, ss *session) {
	key, err := subscription.ParseNoticeKey(r.PathValue("key"))
	if err != nil {
		c.fail(w, r, ss, http.StatusNotFound, "That is not a notice: open the subscription and use its Resend button.")
		return
	}
	if c.Resend == nil {
		c.fail(w, r, ss, http.StatusServiceUnavailable, "This server does not resend notices: use the api target with bounces on.")
		return
	}
	back := "/subscriptions/" + key.SubscriptionID + "#notices"
	if err := c.Resend(r.Context(), key); err != nil {
		_, msg := c.ErrorStatus(err)
		ss.setFlash(flash{subscriptionID: key.SubscriptionID, err: sentence(msg)})
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	c.changed("", false)
	c.Log.Info("console resend", zap.Stringer("notice_key", key), zap.String("role", string(ss.role)))
	ss.setFlash(flash{subscriptionID: key.SubscriptionID, notice: fmt.Sprintf("The %d-day notice is queued to go again to the contract manager.", key.Milestone)})
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// resendable reports whether the resend may take the notice: bounced,
// failed or undeliverable, of the subscription's current term.
func resendable(e subscription.Entry, sub subscription.Subscription) bool {
	switch e.Outcome {
	case subscription.OutcomeBounced, subscription.OutcomeFailed, subscription.OutcomeUndeliverable:
		return e.Key.EndDate == sub.EndDate
	}
	return false
}

// sentence starts msg with a capital and ends it with a full stop.
func sentence(msg string) string {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return msg
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
