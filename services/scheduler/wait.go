package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/nats-io/nats.go"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

// Outcomes follows notice outcome events, so that `run --wait` can return
// when every notice a pass published has reached a final outcome. Start it
// before the pass publishes, so no outcome can slip by unseen.
type Outcomes struct {
	sub     *nats.Subscription
	mu      sync.Mutex
	changed chan struct{}
	// seen is the latest outcome of every key since the start.
	seen map[string]subscription.Outcome
	// fresh holds the keys whose outcome arrived since Wait last looked,
	// while a Wait runs (tracking), so that each outcome costs Wait one
	// look-up instead of a scan of every key still open.
	fresh    []string
	tracking bool
}

// WatchOutcomes subscribes to renewals.notice.{sent,skipped,failed,undeliverable}.
func WatchOutcomes(nc *nats.Conn) (*Outcomes, error) {
	o := &Outcomes{changed: make(chan struct{}, 1), seen: map[string]subscription.Outcome{}}
	sub, err := nc.Subscribe("renewals.notice.*", func(m *nats.Msg) {
		var data event.NoticeOutcome
		ev, err := event.Decode(m.Data, &data)
		if err != nil {
			return
		}
		o.mu.Lock()
		o.seen[ev.Subject] = data.Outcome
		if o.tracking {
			o.fresh = append(o.fresh, ev.Subject)
		}
		o.mu.Unlock()
		select {
		case o.changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow notice outcomes: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("follow notice outcomes: %w", err)
	}
	o.sub = sub
	return o, nil
}

// OpenError is Wait's error when its context ended first: the notices still
// without a final outcome, and the context's error.
type OpenError struct {
	Keys []subscription.NoticeKey
	Err  error
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("%d notices still without an outcome: %v", len(e.Keys), e.Err)
}

func (e *OpenError) Unwrap() error { return e.Err }

// Close stops following.
func (o *Outcomes) Close() { _ = o.sub.Unsubscribe() }

// Wait returns the count of each final outcome once every key in published
// has one. Keys in duplicates (dropped by the stream as repeats of an
// earlier publish) count as final when the ledger already holds an outcome
// for them, else when their outcome event arrives. It returns ctx's error,
// in an *OpenError naming the keys still open, when ctx ends first. One
// Wait at a time: it
// costs one look-up per key and per outcome event, however many are open.
func (o *Outcomes) Wait(ctx context.Context, ledger subscription.Ledger, published, duplicates []subscription.NoticeKey) (map[subscription.Outcome]int, error) {
	open := make(map[string]bool, len(published))
	for _, k := range published {
		open[k.String()] = true
	}
	counts := map[subscription.Outcome]int{}
	for _, k := range duplicates {
		e, err := ledger.Get(ctx, k)
		if err == nil && e.Outcome != "" {
			counts[e.Outcome]++
			continue
		}
		open[k.String()] = true
	}
	// Outcomes that came before Wait are in seen; from here on the new
	// ones are also queued in fresh.
	o.mu.Lock()
	for k := range open {
		if out, ok := o.seen[k]; ok {
			counts[out]++
			delete(open, k)
		}
	}
	o.tracking, o.fresh = true, o.fresh[:0]
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.tracking, o.fresh = false, nil
		o.mu.Unlock()
	}()
	var batch []string
	for len(open) > 0 {
		select {
		case <-o.changed:
		case <-ctx.Done():
			oe := &OpenError{Err: ctx.Err()}
			for k := range open {
				if key, err := subscription.ParseNoticeKey(k); err == nil {
					oe.Keys = append(oe.Keys, key)
				}
			}
			slices.SortFunc(oe.Keys, subscription.CompareKeys)
			return counts, oe
		}
		o.mu.Lock()
		batch, o.fresh = o.fresh, batch[:0]
		for _, k := range batch {
			if open[k] {
				counts[o.seen[k]]++
				delete(open, k)
			}
		}
		o.mu.Unlock()
	}
	return counts, nil
}
