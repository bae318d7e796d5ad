// Package calls records the renewal team's calls: who called, when, and
// what came of it. A call's outcome can change the subscription (renewing
// sets renewal_in_progress, so notices stop; not_renewing sets cancelled),
// and every call is published as renewals.call.recorded, which the call
// list follows. The caller and the note are personal data: the store seals
// them under the subscription's data key, so erasure takes them too, and
// they are never logged or published.
//
// Service is what the API handler (Handler) and the console call.
package calls

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
)

// ErrInvalid wraps every rejection of a call's input; its message says what
// to send instead.
var ErrInvalid = errors.New("invalid call")

// Input is a call as a person enters it.
type Input struct {
	Outcome subscription.CallOutcome `json:"outcome"`
	Note    string                   `json:"note,omitempty"`
	// CallbackOn is the day to call again (callback).
	CallbackOn subscription.Date `json:"callback_on,omitzero"`
	// Seats is the seat count wanted for the next term (seats_changed).
	Seats *int `json:"seats,omitempty"`
	// Reason is one of subscription.LostReasons (not_renewing).
	Reason string `json:"reason,omitempty"`
	// Caller is who made the call; the console passes the signed-in user.
	Caller string `json:"caller,omitempty"`
	// CalledOn is the day of the call, for a call entered afterwards;
	// zero is today in the subscription's zone. It may not be in the
	// future.
	CalledOn subscription.Date `json:"called_on,omitzero"`
}

// Service records and lists calls. Its fields are set once by the caller.
type Service struct {
	Store subscription.Store
	Calls subscription.CallStore
	// JS publishes renewals.call.recorded and, when the status changes,
	// renewals.subscription.upserted.
	JS       jetstream.JetStream
	Location *time.Location
	Now      func() time.Time
}

// Record stores the call on the subscription's current term, applies its
// outcome to the subscription and publishes the event. It returns an error
// wrapping ErrInvalid for bad input and subscription.ErrNotFound when there
// is no such subscription.
func (s *Service) Record(ctx context.Context, id string, in Input) (subscription.Call, error) {
	if err := subscription.ValidID(id); err != nil {
		return subscription.Call{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	sub, err := s.Store.Get(ctx, id)
	if err != nil {
		return subscription.Call{}, err
	}
	now := s.Now()
	today := subscription.Today(now, sub.Location(s.loc()))
	on := in.CalledOn
	if on.IsZero() {
		on = today
	}
	if on.After(today) {
		return subscription.Call{}, fmt.Errorf("%w: called_on %s is in the future: give the day the call was made, or leave it out for today", ErrInvalid, on)
	}
	c := subscription.Call{
		ID: subscription.CallID(now), SubscriptionID: id, EndDate: sub.EndDate, At: now.UTC(), On: on,
		Outcome: subscription.CallOutcome(strings.TrimSpace(string(in.Outcome))), CallbackOn: in.CallbackOn, Seats: in.Seats,
		Reason: strings.TrimSpace(in.Reason), Caller: strings.TrimSpace(in.Caller), Note: strings.TrimSpace(in.Note),
	}
	if err := c.Validate(); err != nil {
		return subscription.Call{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := s.Calls.AddCall(ctx, c); err != nil {
		return subscription.Call{}, err
	}
	changed := false
	switch c.Outcome {
	case subscription.CallRenewing:
		sub.Status, sub.StatusReason = subscription.StatusRenewalInProgress, fmt.Sprintf("renewing (call of %s)", on)
		changed = true
	case subscription.CallNotRenewing:
		sub.Status, sub.StatusReason = subscription.StatusCancelled, fmt.Sprintf("not renewing: %s (call of %s)", c.Reason, on)
		changed = true
	}
	if changed {
		res, err := s.Store.Upsert(ctx, []subscription.Subscription{sub})
		if err != nil {
			return c, fmt.Errorf("call recorded, but the subscription's status could not be set: %w", err)
		}
		if res[0].Change != subscription.Unchanged {
			err := natsbus.Emit(ctx, s.JS, event.SubjectUpserted, id, now, event.SubscriptionUpserted{
				SubscriptionID: id, Change: res[0].Change, EndDate: sub.EndDate, Status: sub.Status,
			})
			if err != nil {
				return c, fmt.Errorf("call recorded and status set, but its event was not published: %w", err)
			}
		}
	}
	ev, err := event.New(event.SubjectCallRecorded, id, now, event.CallRecorded{
		SubscriptionID: id, CallID: c.ID, EndDate: c.EndDate, CalledOn: c.On, Outcome: c.Outcome,
		CallbackOn: c.CallbackOn, Seats: c.Seats, Reason: c.Reason, Status: sub.Status,
	})
	if err != nil {
		return c, err
	}
	if _, err := natsbus.Publish(ctx, s.JS, event.SubjectCallRecorded, ev, "call:"+id+":"+c.ID); err != nil {
		return c, fmt.Errorf("call recorded, but its event was not published (the call list shows it once the subscription changes again): %w", err)
	}
	return c, nil
}

// List returns the subscription's calls, oldest first, notes included.
// It returns subscription.ErrNotFound when there is no such subscription.
func (s *Service) List(ctx context.Context, id string) ([]subscription.Call, error) {
	if err := subscription.ValidID(id); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := s.Store.Get(ctx, id); err != nil {
		return nil, err
	}
	return s.Calls.Calls(ctx, id)
}

func (s *Service) loc() *time.Location {
	if s.Location == nil {
		return time.UTC
	}
	return s.Location
}
