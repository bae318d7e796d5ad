package bounces

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
)

// ResendResult is the answer of a resend.
type ResendResult struct {
	NoticeKey subscription.NoticeKey `json:"notice_key"`
	// Status is "queued": the notifier sends it like any due notice.
	Status string `json:"status"`
	Forced bool   `json:"forced,omitempty"`
}

var emailLike = regexp.MustCompile(`[^\s<>()\[\],;:"']+@[^\s<>()\[\],;:"']+`)

// Resend sends a bounced, failed or undeliverable notice again, to the
// subscription's contract manager as they are now, once: the address must
// have changed since it bounced, unless force is set with a reason (which
// lifts the address's suppression). The ledger keeps the earlier attempt in
// the entry's history. Errors wrap subscription.ErrNotFound, ErrConflict or
// ErrInvalid, each with a sentence that says what to do.
func (s *Service) Resend(ctx context.Context, key subscription.NoticeKey, force bool, reason string) (ResendResult, error) {
	reason = strings.TrimSpace(subscription.OneLine(reason))
	if force && reason == "" {
		return ResendResult{}, fmt.Errorf("%w: a forced resend needs a reason (why the address works now), e.g. --reason \"mailbox restored by the customer's IT\"", ErrInvalid)
	}
	e, err := s.Ledger.Get(ctx, key)
	if errors.Is(err, subscription.ErrNotFound) {
		return ResendResult{}, fmt.Errorf("notice %s was never sent: %w; check the key with `renewals notices`", key, subscription.ErrNotFound)
	}
	if err != nil {
		return ResendResult{}, err
	}
	switch e.Outcome {
	case subscription.OutcomeBounced, subscription.OutcomeFailed, subscription.OutcomeUndeliverable, "":
	default:
		return ResendResult{}, fmt.Errorf("%w: notice %s is %s; only a bounced, failed or undeliverable notice is resent", ErrConflict, key, e.Outcome)
	}
	sub, err := s.Store.Get(ctx, key.SubscriptionID)
	if errors.Is(err, subscription.ErrNotFound) {
		return ResendResult{}, fmt.Errorf("subscription %s is unknown or erased: %w", key.SubscriptionID, subscription.ErrNotFound)
	}
	if err != nil {
		return ResendResult{}, err
	}
	if sub.EndDate != key.EndDate {
		return ResendResult{}, fmt.Errorf("%w: subscription %s has a new end date (%s) since notice %s: the new term's notices go on their own", ErrConflict, sub.ID, sub.EndDate, key)
	}
	to := sub.ContractManager.Email
	if to == "" {
		return ResendResult{}, fmt.Errorf("%w: subscription %s has no contract manager email: set cm_email (re-import or PUT) first", ErrConflict, sub.ID)
	}
	addr := s.Tagger.AddressHash(to)
	sup, suppressed, err := s.suppressions().Suppressed(ctx, addr)
	if err != nil {
		return ResendResult{}, err
	}
	if suppressed && !force {
		return ResendResult{}, fmt.Errorf("%w: the contract manager's address bounced on %s and has not changed: correct cm_email (re-import or PUT), or resend with force and a reason if the address works again",
			ErrConflict, sup.At.In(sub.Location(s.loc())).Format("2 Jan 2006"))
	}
	note := "resend requested"
	if force {
		note = "resend forced: " + emailLike.ReplaceAllString(truncate(reason, 200), "<address>")
	}
	if _, err := s.bounces().Reopen(ctx, key, s.Tagger.RecipientHash(key, to), note, s.Now()); err != nil {
		switch {
		case errors.Is(err, subscription.ErrResent):
			return ResendResult{}, fmt.Errorf("%w: notice %s was already resent to the contract manager's current address; it goes once per address", ErrConflict, key)
		case errors.Is(err, subscription.ErrNotResendable):
			return ResendResult{}, fmt.Errorf("%w: notice %s is being sent right now or was sent: check `renewals notices --subscription %s`", ErrConflict, key, key.SubscriptionID)
		}
		return ResendResult{}, err
	}
	if suppressed {
		// Forced: the person says the address works again.
		if err := s.suppressions().Unsuppress(ctx, addr); err != nil {
			return ResendResult{}, err
		}
	}
	due := event.NoticeDue{
		NoticeKey: key, SubscriptionID: key.SubscriptionID, EndDate: key.EndDate, Milestone: key.Milestone,
		DaysLeft: sub.DaysLeft(s.Now(), s.loc()), Resend: true,
	}
	ev, err := event.New(event.SubjectDue(key.Milestone), key.String(), s.Now(), due)
	if err != nil {
		return ResendResult{}, err
	}
	// One due message per notice and address, however often the request
	// is repeated; the ledger's claim does the rest.
	if _, err := natsbus.Publish(ctx, s.JS, event.SubjectDue(key.Milestone), ev, "resend:"+key.String()+":"+s.Tagger.RecipientHash(key, to)[:16]); err != nil {
		return ResendResult{}, fmt.Errorf("queue the resend of %s: %w; try again", key, err)
	}
	s.Log.Info("notice queued for resend", zap.Stringer("notice_key", key), zap.Bool("forced", force))
	return ResendResult{NoticeKey: key, Status: "queued", Forced: force}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
