// Package scheduler finds the notices that are due and publishes them as
// renewals.notice.due.<milestone> events, with the notice key as Nats-Msg-Id.
// Due-ness comes from dates and a window, never from a trigger having fired:
// every start runs a pass at once, cron runs one daily after that, and a pass
// that was missed heals on the next.
package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
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
	// Retries are the waits before each new try of a scheduled pass that
	// failed; nil means DefaultRetries.
	Retries []time.Duration
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

// Tuning of a pass (see pass.run).
const (
	// batch is how many due candidates the ledger is asked about at once.
	batch = 1000
	// maxInflight bounds the publishes awaiting an acknowledgement between
	// batches: with one batch more, still below natsbus.MaxPendingPublishes,
	// so PublishAsync never stalls.
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
	p := &pass{s: s, start: start, asOf: asOf, today: asOf, res: Result{AsOf: asOf, DryRun: dryRun}}
	if p.today.IsZero() {
		p.today = subscription.Today(start, s.Location)
	}
	err := p.run(ctx)
	if err == nil && s.Lease != nil && !dryRun && asOf.IsZero() {
		// A replica that skipped this pass waits for the record; without it
		// that replica runs the pass again, which is only wasted work.
		if merr := s.Lease.markDone(ctx, p.today); merr != nil {
			s.Log.Warn("scheduler pass: record the finished pass for the other replicas", zap.Error(merr))
		}
	}
	res := p.res
	// A dry run lists the most urgent first, as a person reads it.
	slices.SortFunc(res.Notices, func(a, b Planned) int {
		return cmp.Or(cmp.Compare(a.DaysLeft, b.DaysLeft), strings.Compare(a.Key.String(), b.Key.String()))
	})
	res.Duration = s.Now().Sub(start)
	if s.Observe != nil {
		s.Observe(res, err)
	}
	if err != nil {
		return res, fmt.Errorf("scheduler pass: %w", err)
	}
	s.Log.Info("scheduler pass",
		zap.Stringer("as_of", p.today), zap.Bool("dry_run", dryRun),
		zap.Int("considered", res.Considered), zap.Int("due", res.Due),
		zap.Int("published", res.Published), zap.Int("duplicates", res.Duplicates),
		zap.Int("already_sent", res.AlreadySent), zap.Duration("took", res.Duration))
	return res, nil
}

// pass is the state of one Pass while it runs.
type pass struct {
	s     *Scheduler
	start time.Time
	asOf  subscription.Date // zero: today in each subscription's zone
	today subscription.Date // in the scheduler's zone, for the window
	res   Result
	// due collects candidates until a batch is full; inflight holds the
	// publishes awaiting an acknowledgement, oldest first.
	due      []candidate
	inflight []inflight
	// contracts holds the candidates of subscriptions with a contract
	// number until their end date's subscriptions are read, so that each
	// co-termed group's events can list the group's keys.
	contracts map[cotermed][]candidate
}

type candidate struct {
	n         subscription.Notice
	reachable bool
	// contract is the group's keys when the notice goes in one email with
	// others (event.NoticeDue.ContractKeys).
	contract []subscription.NoticeKey
}

// cotermed is what the notices that go as one email share: the contract,
// the end date, the milestone and the contract manager.
type cotermed struct {
	contract  string
	end       subscription.Date
	milestone int
	cm        string
}

type inflight struct {
	key subscription.NoticeKey
	f   jetstream.PubAckFuture
}

// run reads the window, collects what is due in batches, leaves out what the
// ledger shows as sent, publishes the rest asynchronously and waits for the
// stream to acknowledge every publish. The stream stores the publishes while
// the window is read on: only past maxInflight does the pass wait for the
// oldest ack. Everything runs on the caller's goroutine, so a panic reaches
// the caller's recover (cron.Recover in Run).
func (p *pass) run(ctx context.Context) error {
	from, to := subscription.Window(p.today, p.s.Milestones)
	var day subscription.Date
	err := p.s.Store.EndingBetween(ctx, from, to, func(sub subscription.Subscription) error {
		p.res.Considered++
		if sub.EndDate != day {
			// The window comes in end-date order: the groups of the day
			// before are complete.
			day = sub.EndDate
			if err := p.flushContracts(ctx); err != nil {
				return err
			}
		}
		n, ok := subscription.Due(sub, p.todayOf(sub).DaysUntil(sub.EndDate), p.s.Milestones, nil)
		if !ok {
			return nil
		}
		c := candidate{n: n, reachable: sub.ContractManager.Email != ""}
		if sub.ContractNumber != "" && c.reachable {
			g := cotermed{sub.ContractNumber, n.Key.EndDate, n.Key.Milestone, strings.ToLower(strings.TrimSpace(sub.ContractManager.Email))}
			if p.contracts == nil {
				p.contracts = make(map[cotermed][]candidate)
			}
			p.contracts[g] = append(p.contracts[g], c)
			return nil
		}
		p.due = append(p.due, c)
		if len(p.due) < batch {
			return nil
		}
		return p.flush(ctx)
	})
	if err != nil {
		return err
	}
	if err := p.flushContracts(ctx); err != nil {
		return err
	}
	if err := p.flush(ctx); err != nil {
		return err
	}
	return p.awaitAcks(ctx, 0)
}

// flushContracts queues the candidates held by contract, each co-termed
// group's events listing the group's keys, and flushes full batches.
func (p *pass) flushContracts(ctx context.Context) error {
	groups := slices.SortedFunc(maps.Keys(p.contracts), func(a, b cotermed) int {
		return cmp.Or(cmp.Compare(a.end.Ordinal(), b.end.Ordinal()), strings.Compare(a.contract, b.contract), cmp.Compare(a.milestone, b.milestone), strings.Compare(a.cm, b.cm))
	})
	for _, g := range groups {
		cs := p.contracts[g]
		slices.SortFunc(cs, func(a, b candidate) int { return strings.Compare(a.n.Key.String(), b.n.Key.String()) })
		var keys []subscription.NoticeKey
		if len(cs) > 1 {
			keys = make([]subscription.NoticeKey, len(cs))
			for i, c := range cs {
				keys[i] = c.n.Key
			}
		}
		for _, c := range cs {
			c.contract = keys
			p.due = append(p.due, c)
			if len(p.due) >= batch {
				if err := p.flush(ctx); err != nil {
					return err
				}
			}
		}
		delete(p.contracts, g)
	}
	return nil
}

// todayOf is the pass's day in sub's zone.
func (p *pass) todayOf(sub subscription.Subscription) subscription.Date {
	if !p.asOf.IsZero() {
		return p.asOf
	}
	return subscription.Today(p.start, sub.Location(p.s.Location))
}

// flush asks the ledger about the collected candidates at once and
// publishes those not yet sent (a dry run lists them instead).
func (p *pass) flush(ctx context.Context) error {
	if len(p.due) == 0 {
		return nil
	}
	keys := make([]subscription.NoticeKey, len(p.due))
	for i, c := range p.due {
		keys[i] = c.n.Key
	}
	sent, err := p.s.Ledger.Sent(ctx, keys)
	if err != nil {
		return fmt.Errorf("read ledger: %w", err)
	}
	for _, c := range p.due {
		switch {
		case sent[c.n.Key]:
			p.res.AlreadySent++
		case p.res.DryRun:
			p.res.Due++
			p.res.Notices = append(p.res.Notices, Planned{c.n.Key, c.n.DaysLeft, c.reachable})
		default:
			p.res.Due++
			f, err := p.s.publishDue(c, p.asOf)
			if err != nil {
				return err
			}
			p.inflight = append(p.inflight, inflight{c.n.Key, f})
		}
	}
	p.due = p.due[:0]
	return p.awaitAcks(ctx, maxInflight)
}

// awaitAcks takes the stream's acknowledgements, oldest first, until at most
// keep publishes are still awaiting one.
func (p *pass) awaitAcks(ctx context.Context, keep int) error {
	for len(p.inflight) > keep {
		in := p.inflight[0]
		select {
		case ack := <-in.f.Ok():
			if ack.Duplicate {
				p.res.Duplicates++
				p.res.DuplicateKeys = append(p.res.DuplicateKeys, in.key)
			} else {
				p.res.Published++
				p.res.Keys = append(p.res.Keys, in.key)
			}
		case err := <-in.f.Err():
			return fmt.Errorf("publish due %s: %w", in.key, err)
		case <-ctx.Done():
			return ctx.Err()
		}
		p.inflight = p.inflight[1:]
	}
	return nil
}

// publishDue publishes the due event of c asynchronously, with its notice key
// as Nats-Msg-Id.
func (s *Scheduler) publishDue(c candidate, asOf subscription.Date) (jetstream.PubAckFuture, error) {
	k := c.n.Key
	id := k.String()
	f, err := natsbus.EmitAsync(s.JS, event.SubjectDue(k.Milestone), id, s.Now(), event.NoticeDue{
		NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate,
		Milestone: k.Milestone, DaysLeft: c.n.DaysLeft, AsOf: asOf, ContractKeys: c.contract,
	}, id)
	if err != nil {
		return nil, fmt.Errorf("due %s: %w", id, err)
	}
	return f, nil
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
