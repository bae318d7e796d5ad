package notifier

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/mailer"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
)

// member is one notice of a contract email in hand: claimed, its
// subscription read.
type member struct {
	key subscription.NoticeKey
	sub subscription.Subscription
	log noticeLog
}

// handleContract runs the send protocol for a due notice that co-terms with
// others of its contract (event.NoticeDue.ContractKeys): one email carries
// every notice of the group that is still due, and each key keeps its own
// claim, confirm and outcome event.
//
// Any delivery of the group's events may send the email; the others then
// find their keys settled. The keys are claimed one at a time in key order,
// so two workers with events of one group never hold part of it each: the
// one that claims the first key takes the rest, and the other, refused,
// tries again once the holder is done or its lease has run out. A key
// already sent, or settled since the pass published the group (by the
// delivery that sent the email), is left out: this notice's own is
// announced again and acknowledged. A subscription that was renewed,
// cancelled or erased since the pass gets its own skipped outcome and the
// others still go; one that moved to another contract or contract manager
// is released, for its own event to send.
func (n *Notifier) handleContract(ctx, running context.Context, x *notice) {
	keys := slices.Clone(x.due.ContractKeys)
	if !slices.Contains(keys, x.key) {
		keys = append(keys, x.key)
	}
	slices.SortFunc(keys, func(a, b subscription.NoticeKey) int { return strings.Compare(a.String(), b.String()) })
	keys = slices.Compact(keys)

	var held []subscription.NoticeKey
	release := func(ks []subscription.NoticeKey, ambiguous bool, reason string) {
		for _, k := range ks {
			if err := n.Ledger.Release(context.WithoutCancel(ctx), k, x.token, ambiguous, reason); err != nil {
				x.log.Warn("release claim", zap.Stringer("claimed_key", k), zap.Error(err))
			}
		}
	}
	var own *subscription.Entry // this notice's entry, when settled already
	for _, k := range keys {
		e, err := n.Ledger.Get(ctx, k)
		switch {
		case err != nil && !errors.Is(err, subscription.ErrNotFound):
			release(held, false, "")
			x.log.Warn("read ledger; retrying later", zap.Error(err))
			_ = x.m.NakWithDelay(n.retryDelay(x.delivered))
			return
		case err == nil && n.settledInRound(e, x):
			if k == x.key {
				own = &e
			}
			continue
		}
		err = n.Ledger.Claim(ctx, k, x.token, n.Now(), n.Consumer.Lease)
		switch {
		case err == nil:
			held = append(held, k)
			n.pause("after-claim")
		case errors.Is(err, subscription.ErrAlreadySent):
			// Sent between the read and the claim: read again below.
			if k == x.key {
				if e, err := n.Ledger.Get(ctx, k); err == nil {
					own = &e
				}
			}
		default:
			release(held, false, "")
			n.claimRefused(ctx, x, err)
			return
		}
	}
	if len(held) == 0 {
		n.settledBefore(ctx, x, own)
		return
	}

	// Read the held notices' subscriptions and settle those no longer due.
	subs, errs := n.readMany(ctx, held)
	for _, err := range errs {
		if err != nil && !errors.Is(err, subscription.ErrNotFound) {
			release(held, false, "")
			x.log.Warn("read subscription; retrying later", zap.Error(err))
			_ = x.m.NakWithDelay(n.retryDelay(x.delivered))
			return
		}
	}
	var due []member
	for i, k := range held {
		log := noticeLog{n.Log, zap.Stringer("notice_key", k)}
		if errors.Is(errs[i], subscription.ErrNotFound) {
			n.settleOrLeave(ctx, x, k, result{outcome: subscription.OutcomeSkipped, reason: "subscription erased or unknown"}, log)
			continue
		}
		if reason, skip := n.revalidate(subs[i], k, x.due); skip {
			n.settleOrLeave(ctx, x, k, result{outcome: subscription.OutcomeSkipped, reason: reason}, log)
			continue
		}
		due = append(due, member{key: k, sub: subs[i], log: log})
	}
	// The email goes to the group as it is now: the members that still
	// share this notice's contract and contract manager (or the first
	// member's, when this one dropped out).
	var moved []subscription.NoticeKey
	if len(due) > 0 {
		anchor := due[0]
		for _, d := range due {
			if d.key == x.key {
				anchor = d
			}
		}
		kept := due[:0]
		for _, d := range due {
			if d.key == anchor.key || cotermed(d.sub, anchor.sub) {
				kept = append(kept, d)
			} else {
				d.log.Info("notice left out of the contract email: its contract or contract manager changed")
				moved = append(moved, d.key)
			}
		}
		due = kept
	}
	release(moved, false, "")
	if len(due) > 0 {
		if !n.sendContract(ctx, running, x, due) {
			return
		}
	}
	if own != nil {
		n.settledBefore(ctx, x, own)
		return
	}
	if x.unsettled {
		_ = x.m.NakWithDelay(x.again)
		return
	}
	_ = x.m.Ack()
}

// roundSkew is how far the notifier's clock may be behind the scheduler's
// for settledInRound to still see an outcome as this round's.
const roundSkew = time.Minute

// settledInRound reports whether e is final, or was settled after the pass
// published x's group (less roundSkew): then the delivery that sent the
// contract email settled it, and another must not settle it again. An
// outcome from before (say, undeliverable on an earlier pass) is tried
// again, as a notice on its own would be.
func (n *Notifier) settledInRound(e subscription.Entry, x *notice) bool {
	if subscription.Final(e.Outcome) {
		return true
	}
	return e.Outcome != "" && !x.published.IsZero() && !e.At.Before(x.published.Add(-roundSkew))
}

// settledBefore acknowledges a delivery whose own notice another delivery
// settled, after publishing its outcome event again (a crash between
// confirm and publish may have kept the first from the stream; the stream
// drops a repeat by its Nats-Msg-Id).
func (n *Notifier) settledBefore(ctx context.Context, x *notice, own *subscription.Entry) {
	if own != nil {
		if err := n.emit(ctx, *own); err != nil {
			x.log.Warn("publish outcome event; retrying later", zap.Error(err))
			_ = x.m.NakWithDelay(n.retryDelay(x.delivered))
			return
		}
	}
	if x.unsettled {
		_ = x.m.NakWithDelay(x.again)
		return
	}
	_ = x.m.Ack()
}

// cotermed reports whether a and b still go in one email.
func cotermed(a, b subscription.Subscription) bool {
	return a.ContractNumber != "" && a.ContractNumber == b.ContractNumber && a.EndDate == b.EndDate &&
		strings.EqualFold(strings.TrimSpace(a.ContractManager.Email), strings.TrimSpace(b.ContractManager.Email))
}

// readMany reads the subscriptions of keys, in one round trip where the
// store can.
func (n *Notifier) readMany(ctx context.Context, keys []subscription.NoticeKey) ([]subscription.Subscription, []error) {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.SubscriptionID
	}
	if g, ok := n.Store.(manyGetter); ok {
		return g.GetMany(ctx, ids)
	}
	subs, errs := make([]subscription.Subscription, len(ids)), make([]error, len(ids))
	for i, id := range ids {
		subs[i], errs[i] = n.Store.Get(ctx, id)
	}
	return subs, errs
}

// settleOrLeave settles one key of a contract email; when that cannot be
// done now, x's message is marked for redelivery, the ledger deciding then.
func (n *Notifier) settleOrLeave(ctx context.Context, x *notice, key subscription.NoticeKey, r result, log noticeLog) {
	if again, ok := n.settle(ctx, x.m, key, x.token, r, log); !ok {
		x.unsettled, x.again = true, max(x.again, again)
	}
}

// sendContract renders, sends and settles the email of the due members. It
// reports false when it already disposed of x's message (handed back for a
// retry, or terminated).
func (n *Notifier) sendContract(ctx, running context.Context, x *notice, due []member) bool {
	keys := make([]subscription.NoticeKey, len(due))
	for i, d := range due {
		keys[i] = d.key
	}
	// Every key's outcome in one ledger call: one script on Redis, so a
	// crash leaves none of the email's keys confirmed or all of them; on
	// the key-value store one burst of publishes.
	settleAll := func(r result) {
		cs := make([]subscription.Confirmation, len(due))
		for i, d := range due {
			cs[i] = subscription.Confirmation{Key: d.key, Token: x.token, Entry: entryFor(d.key, r, n.Now())}
		}
		stored, errs := n.Ledger.ConfirmMany(ctx, cs)
		for i, d := range due {
			if errs[i] != nil {
				// Tried again on its own, with back-off.
				n.settleOrLeave(ctx, x, d.key, r, d.log)
				continue
			}
			if again, ok := n.announce(ctx, stored[i], r, d.log); !ok {
				x.unsettled, x.again = true, max(x.again, again)
			}
		}
	}
	first := due[0].sub
	to := first.ContractManager.Email
	if a, err := mail.ParseAddress(to); to == "" || err != nil || a.Address != to {
		reason := "no contract manager email"
		if to != "" {
			reason = "contract manager email is not a valid address"
		}
		settleAll(result{outcome: subscription.OutcomeUndeliverable, reason: reason})
		return true
	}
	if n.Suppressed != nil {
		reason, err := n.Suppressed(ctx, first)
		if err != nil {
			return n.retryContract(ctx, running, x, keys, fmt.Errorf("read suppression list: %w", err))
		}
		if reason != "" {
			settleAll(result{outcome: subscription.OutcomeUndeliverable, reason: reason})
			return true
		}
	}
	subs := make([]subscription.Subscription, len(due))
	notices := make([]subscription.Notice, len(due))
	for i, d := range due {
		subs[i], notices[i] = d.sub, subscription.Notice{Key: d.key, DaysLeft: n.daysLeft(d.sub, x.due)}
	}
	var email render.Email
	var err error
	if len(due) == 1 {
		email, err = n.Renderer.Render(subs[0], notices[0])
	} else {
		email, err = n.Renderer.RenderContract(subs, notices)
	}
	if err != nil {
		settleAll(result{outcome: subscription.OutcomeFailed, reason: "template error: " + err.Error()})
		return true
	}
	h := n.hold(ctx, x.m, x.token, keys...)
	start := n.Now()
	err = n.Sender.Send(ctx, mailer.Message{
		Key: keys[0], Also: keys[1:], To: to, ToName: first.ContractManager.Name,
		Subject: email.Subject, Text: email.Text, HTML: email.HTML,
		Begin: func() error {
			if err := running.Err(); err != nil {
				return fmt.Errorf("shutting down: %w", err)
			}
			for _, k := range keys {
				if err := n.Ledger.Begin(ctx, k, x.token, n.Now(), n.Consumer.Lease); err != nil {
					return err
				}
			}
			return nil
		},
	})
	took := n.Now().Sub(start)
	h.stop()
	switch {
	case err == nil:
		n.pause("after-send")
		settleAll(result{outcome: subscription.OutcomeSent, took: took})
	case errors.Is(err, mailer.ErrPermanent):
		settleAll(result{outcome: subscription.OutcomeFailed, reason: reasonOf(err), took: took})
	default:
		return n.retryContract(ctx, running, x, keys, err)
	}
	return true
}

// retryContract hands a contract email that did not go back for a retry,
// as handle does for one notice, releasing every key it held; the last
// delivery records them failed. It returns false: x's message is disposed
// of.
func (n *Notifier) retryContract(ctx, running context.Context, x *notice, keys []subscription.NoticeKey, sendErr error) bool {
	lost := errors.Is(sendErr, subscription.ErrLostClaim)
	ambiguous := errors.Is(sendErr, mailer.ErrAmbiguous)
	for _, k := range keys {
		if err := n.Ledger.Release(context.WithoutCancel(ctx), k, x.token, ambiguous, reasonOf(sendErr)); err != nil && !errors.Is(err, subscription.ErrLostClaim) {
			x.log.Warn("release claim", zap.Stringer("claimed_key", k), zap.Error(err))
		}
	}
	switch {
	case lost:
		x.log.Warn("claim lost before the send started; retrying later")
		_ = x.m.NakWithDelay(n.Consumer.Lease)
	case running.Err() != nil:
		x.log.Info("notice handed back at shutdown", zap.Bool("ambiguous", ambiguous))
		_ = x.m.NakWithDelay(handBack)
	case x.delivered >= n.Consumer.MaxDeliver:
		// This delivery's retries are over, not the others': its own
		// notice fails; the rest were released for their own events.
		if slices.Contains(keys, x.key) {
			n.failExhausted(ctx, x.key, sendErr.Error(), x.log)
		}
		_ = x.m.Term()
	default:
		x.log.Warn("send failed; retrying later", zap.Int("delivery", x.delivered), zap.Bool("ambiguous", ambiguous), zap.Error(sendErr))
		_ = x.m.NakWithDelay(n.retryDelay(x.delivered))
	}
	return false
}
