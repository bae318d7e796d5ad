// Package scheduler finds the notices that are due and publishes them as
// renewals.notice.due.<milestone> events, with the notice key as Nats-Msg-Id.
// Due-ness comes from dates and a window, never from a trigger having fired:
// every start runs a pass at once, cron runs one daily after that, and a pass
// that was missed heals on the next.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

// Scheduler runs passes. Its fields are set once by the caller.
type Scheduler struct {
	Store      subscription.Store
	Ledger     subscription.Ledger
	JS         jetstream.JetStream
	Milestones subscription.Milestones
	// Location is the default zone (RENEWALS_TIMEZONE).
	Location *time.Location
	Now      func() time.Time
	Log      *zap.Logger
	// Lease, when set, makes sure only one replica runs a pass at a time.
	Lease *Lease
	// Observe, when set, is told the result and error of every pass, for
	// metrics.
	Observe func(res Result, err error)
}

// Planned is one notice a pass found due.
type Planned struct {
	Key      subscription.NoticeKey `json:"notice_key"`
	DaysLeft int                    `json:"days_left"`
	// Reachable is false when the subscription has no contract manager email:
	// the notice will be undeliverable and the call list will show it.
	Reachable bool `json:"reachable"`
}

// Result reports what a pass did.
type Result struct {
	AsOf       subscription.Date `json:"as_of,omitzero"`
	DryRun     bool              `json:"dry_run"`
	Considered int               `json:"considered"`
	// Due counts notices found due and not yet sent.
	Due int `json:"due"`
	// Published counts due events the stream stored; Duplicates those it
	// dropped as repeats inside its duplicate window.
	Published  int `json:"published"`
	Duplicates int `json:"duplicates"`
	// AlreadySent counts notices at their current stage that the ledger
	// shows as sent.
	AlreadySent int       `json:"already_sent"`
	Notices     []Planned `json:"notices,omitempty"`
	// Keys are the published keys, and DuplicateKeys the dropped ones; --wait
	// follows both to a final outcome.
	Keys          []subscription.NoticeKey `json:"-"`
	DuplicateKeys []subscription.NoticeKey `json:"-"`
	Duration      time.Duration            `json:"-"`
}

// batch is how many due candidates a pass checks against the ledger at once.
const batch = 1000

// Pass runs one scheduler pass. With asOf zero, today is reckoned from the
// clock in each subscription's zone; otherwise today is asOf for all. With
// dryRun nothing is published and the due notices are listed instead.
func (s *Scheduler) Pass(ctx context.Context, asOf subscription.Date, dryRun bool) (Result, error) {
	start := s.Now()
	if s.Lease != nil && !dryRun {
		release, err := s.Lease.Acquire(ctx)
		if err != nil {
			return Result{}, err
		}
		defer release()
	}
	res := Result{AsOf: asOf, DryRun: dryRun}
	today := asOf
	if today.IsZero() {
		today = subscription.Today(start, s.Location)
	}
	todayOf := func(sub subscription.Subscription) subscription.Date {
		if !asOf.IsZero() {
			return asOf
		}
		return subscription.Today(start, sub.Location(s.Location))
	}
	var pending []candidate
	flush := func() error {
		if err := s.publish(ctx, pending, asOf, todayOf, &res); err != nil {
			return err
		}
		pending = pending[:0]
		return nil
	}
	from, to := subscription.Window(today, s.Milestones)
	err := s.Store.EndingBetween(ctx, from, to, func(sub subscription.Subscription) error {
		res.Considered++
		days := todayOf(sub).DaysUntil(sub.EndDate)
		n, ok := subscription.Due(sub, days, s.Milestones, nil)
		if !ok {
			return nil
		}
		pending = append(pending, candidate{n, sub.ContractManager.Email != ""})
		if len(pending) == batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	res.Duration = s.Now().Sub(start)
	if s.Observe != nil {
		s.Observe(res, err)
	}
	if err != nil {
		return res, fmt.Errorf("scheduler pass: %w", err)
	}
	s.Log.Info("scheduler pass",
		zap.Stringer("as_of", today), zap.Bool("dry_run", dryRun),
		zap.Int("considered", res.Considered), zap.Int("due", res.Due),
		zap.Int("published", res.Published), zap.Int("duplicates", res.Duplicates),
		zap.Int("already_sent", res.AlreadySent), zap.Duration("took", res.Duration))
	return res, nil
}

type candidate struct {
	n         subscription.Notice
	reachable bool
}

// publish checks a batch of candidates against the ledger and publishes the
// unsent ones asynchronously, waiting for every acknowledgement.
func (s *Scheduler) publish(ctx context.Context, cs []candidate, asOf subscription.Date, todayOf func(subscription.Subscription) subscription.Date, res *Result) error {
	if len(cs) == 0 {
		return nil
	}
	keys := make([]subscription.NoticeKey, len(cs))
	for i, c := range cs {
		keys[i] = c.n.Key
	}
	sent, err := s.Ledger.Sent(ctx, keys)
	if err != nil {
		return fmt.Errorf("read ledger: %w", err)
	}
	type inflight struct {
		key subscription.NoticeKey
		f   jetstream.PubAckFuture
	}
	var futures []inflight
	for _, c := range cs {
		if sent[c.n.Key] {
			res.AlreadySent++
			continue
		}
		res.Due++
		if res.DryRun {
			res.Notices = append(res.Notices, Planned{c.n.Key, c.n.DaysLeft, c.reachable})
			continue
		}
		k := c.n.Key
		ev, err := event.New(event.SubjectDue(k.Milestone), k.String(), s.Now(), event.NoticeDue{
			NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate,
			Milestone: k.Milestone, DaysLeft: c.n.DaysLeft, AsOf: asOf,
		})
		if err != nil {
			return err
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode due event %s: %w", k, err)
		}
		f, err := s.JS.PublishAsync(event.SubjectDue(k.Milestone), data, jetstream.WithMsgID(k.String()))
		if err != nil {
			return fmt.Errorf("publish due %s: %w", k, err)
		}
		futures = append(futures, inflight{k, f})
	}
	if len(futures) == 0 {
		return nil
	}
	select {
	case <-s.JS.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, in := range futures {
		select {
		case ack := <-in.f.Ok():
			if ack.Duplicate {
				res.Duplicates++
				res.DuplicateKeys = append(res.DuplicateKeys, in.key)
			} else {
				res.Published++
				res.Keys = append(res.Keys, in.key)
			}
		case err := <-in.f.Err():
			return fmt.Errorf("publish due %s: %w", in.key, err)
		}
	}
	return nil
}

// Day is one day of a forecast: the notices that would go out on it.
type Day struct {
	Date    subscription.Date `json:"date"`
	Notices []Planned         `json:"notices"`
}

// Forecast lists, day by day from from for days days, which notices would go
// out if a pass ran each day and every notice were sent. It changes nothing.
func (s *Scheduler) Forecast(ctx context.Context, from subscription.Date, days int) ([]Day, error) {
	if days < 1 || days > 366 {
		return nil, fmt.Errorf("forecast days %d: use 1 to 366", days)
	}
	out := make([]Day, days)
	for i := range out {
		out[i].Date = from.AddDays(i)
		out[i].Notices = []Planned{}
	}
	// A notice goes out on the first day of the range that its stage is
	// current and it was not sent before; simulate the passes in memory.
	lo, _ := subscription.Window(from, s.Milestones)
	_, hi := subscription.Window(from.AddDays(days-1), s.Milestones)
	var all []subscription.Subscription
	err := s.Store.EndingBetween(ctx, lo, hi, func(sub subscription.Subscription) error {
		all = append(all, sub)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("forecast: %w", err)
	}
	var keys []subscription.NoticeKey
	for _, sub := range all {
		for _, m := range s.Milestones {
			keys = append(keys, subscription.NoticeKey{SubscriptionID: sub.ID, EndDate: sub.EndDate, Milestone: m})
		}
	}
	sent := map[subscription.NoticeKey]bool{}
	for chunk := range slices.Chunk(keys, batch) {
		got, err := s.Ledger.Sent(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("forecast: read ledger: %w", err)
		}
		for k, v := range got {
			sent[k] = v
		}
	}
	isSent := func(k subscription.NoticeKey) bool { return sent[k] }
	for i := range out {
		for _, sub := range all {
			n, ok := subscription.Due(sub, out[i].Date.DaysUntil(sub.EndDate), s.Milestones, isSent)
			if !ok {
				continue
			}
			sent[n.Key] = true
			out[i].Notices = append(out[i].Notices, Planned{n.Key, n.DaysLeft, sub.ContractManager.Email != ""})
		}
	}
	return out, nil
}

// ErrLeaseHeld is returned when another replica is running a pass.
var ErrLeaseHeld = errors.New("another replica is running a scheduler pass")
