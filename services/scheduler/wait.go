package scheduler

import (
	"context"
	"fmt"
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
	seen    map[string]subscription.Outcome
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

// Close stops following.
func (o *Outcomes) Close() { _ = o.sub.Unsubscribe() }

// Wait returns the count of each final outcome once every key in published
// has one. Keys in duplicates (dropped by the stream as repeats of an
// earlier publish) count as final when the ledger already holds an outcome
// for them, else when their outcome event arrives. It returns ctx's error,
// with the number still open, when ctx ends first.
func (o *Outcomes) Wait(ctx context.Context, ledger subscription.Ledger, published, duplicates []subscription.NoticeKey) (map[subscription.Outcome]int, error) {
	open := map[string]bool{}
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
	for {
		o.mu.Lock()
		for k := range open {
			if out, ok := o.seen[k]; ok {
				counts[out]++
				delete(open, k)
			}
		}
		o.mu.Unlock()
		if len(open) == 0 {
			return counts, nil
		}
		select {
		case <-o.changed:
		case <-ctx.Done():
			return counts, fmt.Errorf("%d notices still without an outcome: %w", len(open), ctx.Err())
		}
	}
}
