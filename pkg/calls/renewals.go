package calls

import (
	"context"
	"fmt"
	"time"

	"renewals/pkg/subscription"
)

// RecordingStore is a subscription.Store that records a renewal fact for
// every upsert that gives a subscription a later end date: the old term
// ended then, and was renewed today, at the stage the old term had reached
// (before its end, or a post-expiry stage). Every path that upserts (import,
// PUT, the CRM's ingest, a call) goes through it, so the renewals report
// sees every renewal.
type RecordingStore struct {
	subscription.Store
	Log        subscription.RenewalLog
	PostExpiry subscription.PostExpiry
	Location   *time.Location
	Now        func() time.Time
}

// Upsert upserts through the wrapped store and then records the renewals
// among the results. When recording fails the subscriptions are stored and
// the error says so.
func (r *RecordingStore) Upsert(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	res, err := r.Store.Upsert(ctx, subs)
	if err != nil {
		return res, err
	}
	facts := Renewals(subs, res, r.Now(), r.loc(), r.PostExpiry)
	if err := r.Log.AddRenewals(ctx, facts); err != nil {
		return res, fmt.Errorf("subscriptions stored, but %d renewals among them were not recorded for the report: %w", len(facts), err)
	}
	return res, nil
}

func (r *RecordingStore) loc() *time.Location {
	if r.Location == nil {
		return time.UTC
	}
	return r.Location
}

// Renewals returns the renewal facts of an upsert: each row whose end date
// moved later than the stored one, renewed on the day of now in the
// subscription's zone (def when it names none).
func Renewals(subs []subscription.Subscription, res []subscription.UpsertResult, now time.Time, def *time.Location, pe subscription.PostExpiry) []subscription.RenewalFact {
	var out []subscription.RenewalFact
	for i, s := range subs {
		if i >= len(res) {
			break
		}
		prev := res[i].PreviousEndDate
		if res[i].Change != subscription.Updated || prev.IsZero() || !prev.Before(s.EndDate) {
			continue
		}
		on := subscription.Today(now, s.Location(def))
		stage := subscription.StageBeforeEnd
		if after := prev.DaysUntil(on); after > 0 {
			stage = pe.Stage(after)
		}
		out = append(out, subscription.RenewalFact{
			SubscriptionID: s.ID, TermEnded: prev, NewEndDate: s.EndDate, RenewedOn: on, Stage: stage,
		})
	}
	return out
}
