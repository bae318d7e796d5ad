// Package scheduler finds the notices that are due and publishes them as
// renewals.notice.due.<milestone> events, with the notice key as Nats-Msg-Id.
// Due-ness comes from dates and a window, never from a trigger having fired:
// every start runs a pass at once, cron runs one daily after that, and a pass
// that was missed heals on the next.
package scheduler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

// Scheduler runs passes. Its fields are set once by the caller.
type Scheduler struct {
	// Store is read through its end-date index, a window at a time.
	Store subscription.Store
	// Ledger says which due notices were already sent.
	Ledger subscription.Ledger
	// JS publishes the due events. It should be a handle of the scheduler's
	// own (natsbus.NewJetStream): a pass bounds its pending publishes below
	// the handle's limit, which other publishers on it would eat into.
	JS jetstream.JetStream
	// Milestones are the stages (RENEWALS_MILESTONES).
	Milestones subscription.Milestones
	// Location is the default zone (RENEWALS_TIMEZONE).
	Location *time.Location
	// Now is the clock.
	Now func() time.Time
	// Log gets one info line per pass, with counts and no personal data.
	Log *zap.Logger
	// Lease, when set, makes sure only one replica runs a pass at a time.
	Lease *Lease
	// Observe, when set, is told the result and error of every pass, for
	// metrics.
	Observe func(res Result, err error)
}

// Planned is one notice a pass found due.
type Planned struct {
	// Key names the notice.
	Key subscription.NoticeKey `json:"notice_key"`
	// DaysLeft is reckoned on the pass's day in the subscription's zone.
	DaysLeft int `json:"days_left"`
	// Reachable is false when the subscription has no contract manager email:
	// the notice will be undeliverable and the call list will show it.
	Reachable bool `json:"reachable"`
}

// Result reports what a pass did.
type Result struct {
	// AsOf is the date the pass ran as, zero for today in each zone.
	AsOf subscription.Date `json:"as_of,omitzero"`
	// DryRun is set when nothing was published.
	DryRun bool `json:"dry_run"`
	// Considered counts the subscriptions read from the window.
	Considered int `json:"considered"`
	// Due counts notices found due and not yet sent.
	Due int `json:"due"`
	// Published counts due events the stream stored; Duplicates those it
	// dropped as repeats inside its duplicate window.
	Published  int `json:"published"`
	Duplicates int `json:"duplicates"`
	// AlreadySent counts notices at their current stage that the ledger
	// shows as sent.
	AlreadySent int `json:"already_sent"`
	// Notices lists the due notices of a dry run, by days left, then by
	// notice key.
	Notices []Planned `json:"notices,omitempty"`
	// Keys are the published keys, and DuplicateKeys the dropped ones; --wait
	// follows both to a final outcome.
	Keys          []subscription.NoticeKey `json:"-"`
	DuplicateKeys []subscription.NoticeKey `json:"-"`
	// Duration is how long the pass took, lease wait included.
	Duration time.Duration `json:"-"`
}

// Tuning of a pass. A pass is a pipeline: readers walk slices of the window
// in parallel and hand batches of due candidates to a ledger stage, which
// drops the notices already sent and hands the rest to the publisher; a
// collector takes the stream's acknowledgements as they come. Reading,
// ledger checks, publishing and acknowledgements overlap, and at most
// maxInflight publishes wait for an acknowledgement at any time (below
// natsbus.MaxPendingPublishes, so PublishAsync never stalls).
const (
	// batch is how many due candidates the ledger stage checks at once.
	batch = 1000
	// readers is how many slices of the window are read at once.
	readers = 4
	// maxInflight bounds the publishes awaiting an acknowledgement.
	maxInflight = 2048
)

// Pass runs one scheduler pass. With asOf zero, today is reckoned from the
// clock in each subscription's zone; otherwise today is asOf for all. With
// dryRun nothing is published and the due notices are listed instead.
// Without a Lease, or when the lease is not honoured by another process,
// two passes at once are still safe: they publish the same notice keys and
// the stream drops the repeats (see Lease).
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
	}
	// A panic in a stage's goroutine would take the process down, out of
	// reach of the caller's recover (cron.Recover): each stage stops the
	// pass instead, and the panic is raised again on the caller's goroutine.
	var panicked atomic.Value
	guard := func() {
		if v := recover(); v != nil {
			panicked.CompareAndSwap(nil, fmt.Sprintf("%v\n%s", v, debug.Stack()))
			fail(errors.New("a pass stage panicked"))
		}
	}

	// Stage 1: read the window, a slice per reader, and find what is due.
	var considered atomic.Int64
	batches := make(chan []candidate, readers)
	var rg sync.WaitGroup
	from, to := subscription.Window(today, s.Milestones)
	for _, r := range split(from, to, readers) {
		rg.Go(func() {
			defer guard()
			pending := make([]candidate, 0, batch)
			send := func() error {
				select {
				case batches <- pending:
					pending = make([]candidate, 0, batch)
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			err := s.Store.EndingBetween(ctx, r[0], r[1], func(sub subscription.Subscription) error {
				considered.Add(1)
				n, ok := subscription.Due(sub, todayOf(sub).DaysUntil(sub.EndDate), s.Milestones, nil)
				if !ok {
					return nil
				}
				pending = append(pending, candidate{n, sub.ContractManager.Email != ""})
				if len(pending) == batch {
					return send()
				}
				return nil
			})
			if err == nil && len(pending) > 0 {
				err = send()
			}
			if err != nil {
				fail(err)
			}
		})
	}
	go func() {
		rg.Wait()
		close(batches)
	}()

	// Stage 2: leave out what the ledger shows as sent.
	unsent := make(chan []candidate, 2)
	var alreadySent int
	go func() {
		defer close(unsent)
		defer guard()
		for cs := range batches {
			if ctx.Err() != nil {
				continue // drain, so that no reader blocks
			}
			keys := make([]subscription.NoticeKey, len(cs))
			for i, c := range cs {
				keys[i] = c.n.Key
			}
			sent, err := s.Ledger.Sent(ctx, keys)
			if err != nil {
				fail(fmt.Errorf("read ledger: %w", err))
				continue
			}
			out := cs[:0]
			for _, c := range cs {
				if sent[c.n.Key] {
					alreadySent++
				} else {
					out = append(out, c)
				}
			}
			select {
			case unsent <- out:
			case <-ctx.Done():
			}
		}
	}()

	// Stage 4: collect the stream's acknowledgements.
	acks := make(chan inflight, maxInflight)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		defer guard()
		for in := range acks {
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
				fail(fmt.Errorf("publish due %s: %w", in.key, err))
			case <-ctx.Done():
			}
		}
	}()

	// Stage 3: publish, here.
	for cs := range unsent {
		for _, c := range cs {
			if ctx.Err() != nil {
				break
			}
			res.Due++
			if dryRun {
				res.Notices = append(res.Notices, Planned{c.n.Key, c.n.DaysLeft, c.reachable})
				continue
			}
			f, err := s.publishDue(c.n, asOf)
			if err != nil {
				fail(err)
				break
			}
			select {
			case acks <- inflight{c.n.Key, f}:
			case <-ctx.Done():
			}
		}
	}
	close(acks)
	<-collected
	if v := panicked.Load(); v != nil {
		panic("scheduler pass: " + v.(string))
	}
	// The readers hand their slices over in any order: a dry run lists the
	// most urgent first, as a person reads it.
	slices.SortFunc(res.Notices, func(a, b Planned) int {
		return cmp.Or(cmp.Compare(a.DaysLeft, b.DaysLeft), strings.Compare(a.Key.String(), b.Key.String()))
	})

	res.Considered = int(considered.Load())
	res.AlreadySent = alreadySent
	res.Duration = s.Now().Sub(start)
	if s.Observe != nil {
		s.Observe(res, firstErr)
	}
	if firstErr != nil {
		return res, fmt.Errorf("scheduler pass: %w", firstErr)
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

type inflight struct {
	key subscription.NoticeKey
	f   jetstream.PubAckFuture
}

// publishDue publishes the due event of n asynchronously, with its notice key
// as Nats-Msg-Id.
func (s *Scheduler) publishDue(n subscription.Notice, asOf subscription.Date) (jetstream.PubAckFuture, error) {
	k := n.Key
	id := k.String()
	ev, err := event.New(event.SubjectDue(k.Milestone), id, s.Now(), event.NoticeDue{
		NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate,
		Milestone: k.Milestone, DaysLeft: n.DaysLeft, AsOf: asOf,
	})
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode due event %s: %w", id, err)
	}
	f, err := s.JS.PublishAsync(event.SubjectDue(k.Milestone), data, jetstream.WithMsgID(id))
	if err != nil {
		return nil, fmt.Errorf("publish due %s: %w", id, err)
	}
	return f, nil
}

// split cuts [from, to] into at most n contiguous ranges of whole days.
func split(from, to subscription.Date, n int) [][2]subscription.Date {
	days := from.DaysUntil(to) + 1
	if days < 1 {
		return nil
	}
	step := (days + n - 1) / n
	var out [][2]subscription.Date
	for lo := 0; lo < days; lo += step {
		out = append(out, [2]subscription.Date{from.AddDays(lo), from.AddDays(min(lo+step, days) - 1)})
	}
	return out
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
	err := s.ForecastEach(ctx, from, days, func(day subscription.Date, p Planned) error {
		i := from.DaysUntil(day)
		out[i].Notices = append(out[i].Notices, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ForecastEach calls fn for each notice that Forecast lists, in its order:
// by day, then by end date and subscription id. It stops at fn's first
// error and returns it. The subscriptions are read in batches and only
// what a planned notice needs (its key, days left and whether the contract
// manager can be reached) is kept until fn has seen it; no record or
// personal data outlives its batch.
func (s *Scheduler) ForecastEach(ctx context.Context, from subscription.Date, days int, fn func(day subscription.Date, p Planned) error) error {
	if days < 1 || days > 366 {
		return fmt.Errorf("forecast days %d: use 1 to 366", days)
	}
	// A notice goes out on the first day of the range that its stage is
	// current and it was not sent before; simulate the passes in memory,
	// one subscription at a time (one's notices never change another's).
	plan := make([][]Planned, days)
	type brief struct {
		id        string
		end       subscription.Date
		status    subscription.Status
		reachable bool
	}
	pending := make([]brief, 0, batch)
	simulate := func() error {
		if len(pending) == 0 {
			return nil
		}
		keys := make([]subscription.NoticeKey, 0, len(pending)*len(s.Milestones))
		for _, b := range pending {
			for _, m := range s.Milestones {
				keys = append(keys, subscription.NoticeKey{SubscriptionID: b.id, EndDate: b.end, Milestone: m})
			}
		}
		sent, err := s.Ledger.Sent(ctx, keys)
		if err != nil {
			return fmt.Errorf("read ledger: %w", err)
		}
		isSent := func(k subscription.NoticeKey) bool { return sent[k] }
		for _, b := range pending {
			sub := subscription.Subscription{ID: b.id, EndDate: b.end, Status: b.status}
			for i := range days {
				n, ok := subscription.Due(sub, from.AddDays(i).DaysUntil(b.end), s.Milestones, isSent)
				if !ok {
					continue
				}
				sent[n.Key] = true
				plan[i] = append(plan[i], Planned{n.Key, n.DaysLeft, b.reachable})
			}
		}
		pending = pending[:0]
		return nil
	}
	lo, _ := subscription.Window(from, s.Milestones)
	_, hi := subscription.Window(from.AddDays(days-1), s.Milestones)
	err := s.Store.EndingBetween(ctx, lo, hi, func(sub subscription.Subscription) error {
		pending = append(pending, brief{strings.Clone(sub.ID), sub.EndDate, sub.Status, sub.ContractManager.Email != ""})
		if len(pending) == batch {
			return simulate()
		}
		return nil
	})
	if err == nil {
		err = simulate()
	}
	if err != nil {
		return fmt.Errorf("forecast: %w", err)
	}
	for i, ps := range plan {
		for _, p := range ps {
			if err := fn(from.AddDays(i), p); err != nil {
				return err
			}
		}
		plan[i] = nil
	}
	return nil
}

// ErrLeaseHeld is returned when another replica is running a pass.
var ErrLeaseHeld = errors.New("another replica is running a scheduler pass")
