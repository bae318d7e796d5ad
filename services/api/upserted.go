package api

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/subscription"
)

// Waiting for the upserted events' acknowledgements. A request answers only
// once JetStream has acknowledged every event it published, so that an
// answer means the events are in the stream: a process killed right after
// it loses none.
const (
	// upsertWindow is how many events of one request may await their
	// acknowledgement before it waits for them; below
	// natsbus.MaxPendingPublishes, so that PublishAsync does not stall.
	upsertWindow = 1024
	// upsertAckWait bounds each wait for a window's acknowledgements.
	upsertAckWait = 30 * time.Second
)

// upsertEvents publishes renewals.subscription.upserted for each created or
// updated record of one request and collects the acknowledgements. It is
// used from one goroutine.
type upsertEvents struct {
	s       *Server
	ctx     context.Context
	pending []pendingUpsert
	acked   int
	failed  int
	first   error // the first failure, with its subscription
}

type pendingUpsert struct {
	id string
	f  jetstream.PubAckFuture
}

func (s *Server) upsertEvents(ctx context.Context) *upsertEvents {
	return &upsertEvents{s: s, ctx: ctx}
}

// add publishes the event of one stored record; an unchanged one has none.
func (u *upsertEvents) add(sub subscription.Subscription, res subscription.UpsertResult) {
	if res.Change == subscription.Unchanged {
		return
	}
	f, err := PublishUpsert(u.ctx, u.s.JS, u.s.Now(), sub, res)
	if err != nil {
		u.fail(sub.ID, err)
		return
	}
	u.pending = append(u.pending, pendingUpsert{sub.ID, f})
	if len(u.pending) >= upsertWindow {
		u.drain()
	}
}

func (u *upsertEvents) fail(id string, err error) {
	u.failed++
	if u.first == nil {
		u.first = fmt.Errorf("subscription %s: %w", id, err)
	}
	u.s.Log.Warn("publish upsert event", zap.String("subscription_id", id), zap.Error(err))
}

// drain waits for the acknowledgement of every event published so far, at
// most upsertAckWait (or until the request's context ends).
func (u *upsertEvents) drain() {
	timer := time.NewTimer(upsertAckWait)
	defer timer.Stop()
	expired := false
	for _, p := range u.pending {
		if expired {
			u.fail(p.id, jetstream.ErrAsyncPublishTimeout)
			continue
		}
		select {
		case <-p.f.Ok():
			u.acked++
		case err := <-p.f.Err():
			u.fail(p.id, err)
		case <-u.ctx.Done():
			expired = true
			u.fail(p.id, u.ctx.Err())
		case <-timer.C:
			expired = true
			u.fail(p.id, fmt.Errorf("no acknowledgement within %v: %w", upsertAckWait, jetstream.ErrAsyncPublishTimeout))
		}
	}
	clear(u.pending)
	u.pending = u.pending[:0]
}

// wait waits for the outstanding acknowledgements and returns an error
// (CodeUnavailable) when any event was not acknowledged.
func (u *upsertEvents) wait() error {
	u.drain()
	if u.failed == 0 {
		return nil
	}
	return errorf(CodeUnavailable, "the subscriptions are stored, but JetStream did not confirm %d of their %d renewals.subscription.upserted events (%v): check that NATS is up; the call list and other event readers miss those changes until the subscriptions change again",
		u.failed, u.failed+u.acked, u.first)
}
