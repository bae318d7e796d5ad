// Package report answers "how did renewals go": per month of end date, how
// many subscriptions came up, how many renewed before the end, how many
// after it (in which post-expiry stage), how many were lost (and why) and
// how many are still open, the renewal rate, and the notices and calls it
// took.
//
// A renewal is an upsert that gives a subscription a later end date; the
// store keeps a subscription.RenewalFact for each (calls.RecordingStore
// records them), since the subscription itself then carries the new term.
// A term that came up is either such a fact (renewed) or a subscription
// whose end date is still in the month: lost when it was cancelled (by a
// not_renewing call, or by import) or has passed its last post-expiry
// stage unrenewed, else still open.
package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"renewals/pkg/subscription"
)

// Month is one month of end dates.
type Month struct {
	// Month is YYYY-MM.
	Month  string `json:"month"`
	CameUp int    `json:"came_up"`
	// RenewedBeforeEnd counts renewals on or before the end date;
	// RenewedAfterEnd those after it, by the stage the term had reached.
	RenewedBeforeEnd int            `json:"renewed_before_end"`
	RenewedAfterEnd  map[string]int `json:"renewed_after_end"`
	RenewedLate      int            `json:"renewed_late"`
	Renewed          int            `json:"renewed"`
	Lost             int            `json:"lost"`
	// LostReasons counts the lost by reason: a not_renewing call's reason,
	// "cancelled" for one cancelled otherwise, "lapsed" for one the vendor
	// cancelled after its last stage.
	LostReasons map[string]int `json:"lost_reasons"`
	Open        int            `json:"open"`
	// RenewalRate is renewed / (renewed + lost): of the terms decided, the
	// share renewed; nil while none is decided.
	RenewalRate *float64 `json:"renewal_rate"`
	// NoticesSent (sent, bounced or not) and Calls are those of the month's terms (by the term's
	// end date); CallsByOutcome splits the calls.
	NoticesSent    int            `json:"notices_sent"`
	Calls          int            `json:"calls"`
	CallsByOutcome map[string]int `json:"calls_by_outcome"`
}

// Report is the answer for [From, To].
type Report struct {
	From   subscription.Date `json:"from"`
	To     subscription.Date `json:"to"`
	AsOf   subscription.Date `json:"as_of"`
	Months []Month           `json:"months"`
	Total  Month             `json:"total"`
}

// Builder reads what a report needs. Its fields are set once by the caller.
type Builder struct {
	Store      subscription.Store
	Ledger     subscription.Ledger
	Calls      subscription.CallStore
	Renewals   subscription.RenewalLog
	PostExpiry subscription.PostExpiry
	Location   *time.Location
	Now        func() time.Time
}

// ErrRange wraps a rejected from/to: the message says what to give.
var ErrRange = errors.New("bad report range")

// readersAtOnce bounds the reads of notices and calls a report keeps in
// flight at once.
const readersAtOnce = 32

// MaxMonths bounds one report.
const MaxMonths = 36

// Build reports on the terms ending in [from, to], as of asOf (today in
// the default zone when zero).
func (b *Builder) Build(ctx context.Context, from, to, asOf subscription.Date) (Report, error) {
	if asOf.IsZero() {
		loc := b.Location
		if loc == nil {
			loc = time.UTC
		}
		asOf = subscription.Today(b.Now(), loc)
	}
	if to.Before(from) {
		return Report{}, fmt.Errorf("%w: to %s is before from %s: give from first", ErrRange, to, from)
	}
	r := Report{From: from, To: to, AsOf: asOf}
	months := map[string]*Month{}
	var order []string
	for m := monthStart(from); !m.After(to); m = nextMonth(m) {
		if len(order) == MaxMonths {
			return Report{}, fmt.Errorf("%w: a report covers at most %d months: narrow from and to", ErrRange, MaxMonths)
		}
		key := m.String()[:7]
		months[key] = newMonth(key)
		order = append(order, key)
	}
	month := func(d subscription.Date) *Month { return months[d.String()[:7]] }
	type term struct {
		id  string
		end subscription.Date
	}
	var terms []term
	err := b.Renewals.RenewalsEnding(ctx, from, to, func(f subscription.RenewalFact) error {
		m := month(f.TermEnded)
		m.CameUp++
		m.Renewed++
		if f.Stage == subscription.StageBeforeEnd || f.Stage == "" {
			m.RenewedBeforeEnd++
		} else {
			m.RenewedLate++
			m.RenewedAfterEnd[f.Stage]++
		}
		terms = append(terms, term{f.SubscriptionID, f.TermEnded})
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("renewals report: %w", err)
	}
	type lostSub struct {
		id  string
		end subscription.Date
	}
	var cancelled []lostSub
	err = b.Store.EndingBetween(ctx, from, to, func(s subscription.Subscription) error {
		m := month(s.EndDate)
		m.CameUp++
		terms = append(terms, term{s.ID, s.EndDate})
		switch {
		case s.Status == subscription.StatusCancelled:
			m.Lost++
			cancelled = append(cancelled, lostSub{s.ID, s.EndDate})
		case s.Status != subscription.StatusRenewalInProgress && s.EndDate.DaysUntil(asOf) > b.PostExpiry.LastDay():
			m.Lost++
			m.LostReasons["lapsed"]++
		default:
			m.Open++
		}
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("renewals report: %w", err)
	}
	for _, c := range cancelled {
		reason := "cancelled"
		calls, err := b.Calls.Calls(ctx, c.id)
		if err != nil {
			return Report{}, fmt.Errorf("renewals report: %w", err)
		}
		for i := len(calls) - 1; i >= 0; i-- {
			if calls[i].EndDate == c.end && calls[i].Outcome == subscription.CallNotRenewing && calls[i].Reason != "" {
				reason = calls[i].Reason
				break
			}
		}
		month(c.end).LostReasons[reason]++
	}
	// Each term's notices and calls are two reads of their own: run them
	// side by side, so that a report over a large portfolio waits for
	// round trips in parallel rather than one after another.
	type tally struct {
		notices int
		calls   []subscription.Call
	}
	tallies := make([]tally, len(terms))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readersAtOnce)
	for i, t := range terms {
		g.Go(func() error {
			entries, err := b.Ledger.List(gctx, t.id)
			if err != nil {
				return fmt.Errorf("renewals report: notices of %s: %w", t.id, err)
			}
			for _, e := range entries {
				if e.Key.EndDate == t.end && (e.Outcome == subscription.OutcomeSent || e.Outcome == subscription.OutcomeBounced) {
					tallies[i].notices++
				}
			}
			calls, err := b.Calls.Calls(gctx, t.id)
			if err != nil {
				return fmt.Errorf("renewals report: calls of %s: %w", t.id, err)
			}
			for _, c := range calls {
				if c.EndDate == t.end {
					tallies[i].calls = append(tallies[i].calls, c)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Report{}, err
	}
	for i, t := range terms {
		m := month(t.end)
		m.NoticesSent += tallies[i].notices
		for _, c := range tallies[i].calls {
			m.Calls++
			m.CallsByOutcome[string(c.Outcome)]++
		}
	}
	r.Total = *newMonth("total")
	for _, k := range order {
		m := months[k]
		m.rate()
		r.Months = append(r.Months, *m)
		r.Total.add(*m)
	}
	r.Total.rate()
	return r, nil
}

func newMonth(key string) *Month {
	return &Month{Month: key, RenewedAfterEnd: map[string]int{}, LostReasons: map[string]int{}, CallsByOutcome: map[string]int{}}
}

func (m *Month) rate() {
	if d := m.Renewed + m.Lost; d > 0 {
		r := float64(m.Renewed) / float64(d)
		m.RenewalRate = &r
	}
}

func (m *Month) add(o Month) {
	m.CameUp += o.CameUp
	m.RenewedBeforeEnd += o.RenewedBeforeEnd
	m.RenewedLate += o.RenewedLate
	m.Renewed += o.Renewed
	m.Lost += o.Lost
	m.Open += o.Open
	m.NoticesSent += o.NoticesSent
	m.Calls += o.Calls
	for k, v := range o.RenewedAfterEnd {
		m.RenewedAfterEnd[k] += v
	}
	for k, v := range o.LostReasons {
		m.LostReasons[k] += v
	}
	for k, v := range o.CallsByOutcome {
		m.CallsByOutcome[k] += v
	}
}

func monthStart(d subscription.Date) subscription.Date {
	t, _ := time.Parse("2006-01-02", d.String())
	return subscription.DateOf(time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC))
}

// nextMonth is the first day of the month after the one d starts.
func nextMonth(d subscription.Date) subscription.Date {
	t, _ := time.Parse("2006-01-02", d.String())
	return subscription.DateOf(time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC))
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
