package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"renewals/pkg/calls"
	"renewals/pkg/subscription"
)

func callCmd(args []string, env Env) error {
	outcomes := make([]string, len(subscription.CallOutcomes))
	for i, o := range subscription.CallOutcomes {
		outcomes[i] = string(o)
	}
	fs := newFlagSet("call", "call ID --outcome OUTCOME [--note TEXT] [--callback DATE] [--seats N] [--reason REASON]\n\n"+
		"Records a renewal call to subscription ID and what came of it: "+strings.Join(outcomes, ", ")+".\n"+
		"renewing stops the notices (renewal_in_progress); not_renewing cancels the subscription.", env)
	server, dataDir := clientFlags(fs, env)
	outcome := fs.String("outcome", "", "what came of the call: "+strings.Join(outcomes, ", "))
	note := fs.String("note", "", "what was said (personal data: kept sealed, erased with the subscription)")
	callback := fs.String("callback", "", "for --outcome callback: the day to call again (YYYY-MM-DD)")
	seats := fs.String("seats", "", "for --outcome seats_changed: the seat count for the next term")
	reason := fs.String("reason", "", "for --outcome not_renewing: "+strings.Join(subscription.LostReasons, ", "))
	caller := fs.String("caller", env.Getenv("USER"), "who made the call (default: $USER)")
	on := fs.String("on", "", "the day the call was made, when entered later (YYYY-MM-DD; default today)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if *outcome == "" {
		return fmt.Errorf("give --outcome, one of %s: see 'renewals call --help'", strings.Join(outcomes, ", "))
	}
	in := calls.Input{Outcome: subscription.CallOutcome(*outcome), Note: *note, Reason: *reason, Caller: *caller}
	if *callback != "" {
		d, err := subscription.ParseDate(*callback)
		if err != nil {
			return fmt.Errorf("--callback: %v", err)
		}
		in.CallbackOn = d
	}
	if *on != "" {
		d, err := subscription.ParseDate(*on)
		if err != nil {
			return fmt.Errorf("--on: %v", err)
		}
		in.CalledOn = d
	}
	if *seats != "" {
		n, err := strconv.Atoi(*seats)
		if err != nil {
			return fmt.Errorf("--seats %q: give a whole number of seats, e.g. 12", *seats)
		}
		in.Seats = &n
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	var got subscription.Call
	err = c.do(http.MethodPost, "/api/v1/subscriptions/"+url.PathEscape(id)+"/calls", "application/json", jsonBody(in), &got)
	if se, ok := errors.AsType[*serverError](err); ok && (se.status == http.StatusNotFound || se.status == http.StatusBadRequest) {
		return rejected{err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "recorded a call to subscription %s on %s: %s", id, got.On, got.Outcome)
	switch got.Outcome {
	case subscription.CallCallback:
		fmt.Fprintf(env.Stdout, "; off the call list until %s", got.CallbackOn)
	case subscription.CallRenewing:
		fmt.Fprint(env.Stdout, "; renewal in progress, no further notices")
	case subscription.CallNotRenewing:
		fmt.Fprintf(env.Stdout, " (%s); the subscription is cancelled", got.Reason)
	case subscription.CallSeatsChanged:
		fmt.Fprintf(env.Stdout, "; %d seats for the next term", *got.Seats)
	case subscription.CallWrongContact:
		fmt.Fprint(env.Stdout, "; stays on the call list as unreachable until the contract manager is changed")
	}
	fmt.Fprintln(env.Stdout)
	return nil
}
