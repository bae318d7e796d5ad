package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
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
//
// On a server with atomic batch publish (2.12 or newer) the events go in
// atomic batches of natsbus.AtomicMax, which the stream syncs to disk once
// each: with sync_interval always (the embedded default), publishing them
// one at a time held an import to the disk's fsyncs, one a row. Elsewhere,
// or when the stream refuses a batch, they are published one at a time,
// asynchronously, upsertWindow at a time.
type upsertEvents struct {
	s      *Server
	ctx    context.Context
	atomic bool
	// batch and batchIDs hold the events not yet published (atomic only).
	batch    []*nats.Msg
	batchIDs []string
	pending  []pendingUpsert
	acked    int
	failed   int
	first    error // the first failure, with its subscription
}

type pendingUpsert struct {
	id string
	f  jetstream.PubAckFuture
}

func (s *Server) upsertEvents(ctx context.Context) *upsertEvents {
	return &upsertEvents{s: s, ctx: ctx, atomic: natsbus.Batchable(s.JS.Conn())}
}

// add publishes the event of one stored record; an unchanged one has none.
func (u *upsertEvents) add(sub subscription.Subscription, res subscription.UpsertResult) {
	if res.Change == subscription.Unchanged {
		return
	}
	data, err := upsertData(u.s.Now(), sub, res)
	if err != nil {
		u.fail(sub.ID, err)
		return
	}
	if !u.atomic {
		u.publishAsync(sub.ID, data)
		return
	}
	u.batch = append(u.batch, &nats.Msg{Subject: event.SubjectUpserted, Data: data})
	u.batchIDs = append(u.batchIDs, sub.ID)
	if len(u.batch) >= natsbus.AtomicMax {
		u.flush()
	}
}

func (u *upsertEvents) publishAsync(id string, data []byte) {
	f, err := u.s.JS.PublishAsync(event.SubjectUpserted, data)
	if err != nil {
		u.fail(id, err)
		return
	}
	u.pending = append(u.pending, pendingUpsert{id, f})
	if len(u.pending) >= upsertWindow {
		u.drain()
	}
}

// flush publishes the batched events as one atomic batch. When the stream
// refuses it (nothing of it stored), they and the rest of the request go
// one at a time.
func (u *upsertEvents) flush() {
	if len(u.batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(u.ctx, upsertAckWait)
	_, err := natsbus.PublishAtomic(ctx, u.s.JS.Conn(), u.batch)
	cancel()
	switch {
	case err == nil:
		u.acked += len(u.batch)
	case errors.Is(err, natsbus.ErrBatchRefused):
		u.s.Log.Warn("publish upsert events: the stream refused an atomic batch; publishing them one at a time", zap.Error(err))
		u.atomic = false
		for i, m := range u.batch {
			u.publishAsync(u.batchIDs[i], m.Data)
		}
	default:
		// The answer was lost: the batch may or may not be stored.
		u.failed += len(u.batch)
		if u.first == nil {
			u.first = fmt.Errorf("subscription %s and %d more: %w", u.batchIDs[0], len(u.batch)-1, err)
		}
		u.s.Log.Warn("publish upsert events", zap.Int("events", len(u.batch)), zap.String("first_subscription_id", u.batchIDs[0]), zap.Error(err))
	}
	clear(u.batch)
	u.batch, u.batchIDs = u.batch[:0], u.batchIDs[:0]
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
	u.flush()
	u.drain()
	if u.failed == 0 {
		return nil
	}
	return errorf(CodeUnavailable, "the subscriptions are stored, but JetStream did not confirm %d of their %d renewals.subscription.upserted events (%v): check that NATS is up; the call list and other event readers miss those changes until the subscriptions change again",
		u.failed, u.failed+u.acked, u.first)
}
