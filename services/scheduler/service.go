package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"renewals/pkg/subscription"
)

// Run runs a pass at once (robfig/cron does not catch up on runs missed while
// the process was down), then on spec in the scheduler's zone (a CRON_TZ=
// prefix in spec overrides it), until ctx ends. A pass that fails is tried
// again after each of Retries' waits; one skipped because another replica
// holds the lease waits for that replica and passes itself if the lease
// comes free without the day's pass finished (see awaitHolder); one that
// panics is recovered and logged; a pass still running when the next is
// due makes the next one skip. Run returns once no pass is running any
// more, the start-up pass included, so the caller may close the store and
// the bus after it.
func (s *Scheduler) Run(ctx context.Context, spec string, parser cron.Parser) error {
	logger := cronLogger{s.Log}
	c := cron.New(
		cron.WithLocation(s.Location),
		cron.WithParser(parser),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)),
	)
	job := cron.FuncJob(func() { s.scheduled(ctx) })
	id, err := c.AddJob(spec, job)
	if err != nil {
		return fmt.Errorf("RENEWALS_SCHEDULE %q: %w", spec, err)
	}
	// The start-up pass goes through the same chain, so it too is recovered
	// and never overlaps a scheduled one. cron does not wait for it on
	// Stop, so Run does.
	var startup sync.WaitGroup
	startup.Go(c.Entry(id).WrappedJob.Run)
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	startup.Wait()
	return nil
}

// DefaultRetries are the waits before each new try of a scheduled pass that
// failed (the store or NATS out of reach, a cluster electing a new leader
// mid-pass): soon, then less often, so that the day's notices go out
// minutes after the fault ends rather than at the next scheduled run. A
// pass is safe to repeat: the ledger and the stream's duplicate window drop
// what the failed one published. A retry that finds the lease held goes on
// trying too, since the holder may be this replica's failed pass, whose
// lease lapses.
var DefaultRetries = []time.Duration{5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

// holderWait bounds how long a replica that skipped a scheduled pass waits
// for the replica holding the lease to finish it.
const holderWait = time.Hour

func (s *Scheduler) scheduled(ctx context.Context) {
	retries := s.Retries
	if retries == nil {
		retries = DefaultRetries
	}
	today := subscription.Today(s.Now(), s.Location)
	waited := false
	for attempt := 0; ctx.Err() == nil; attempt++ {
		_, err := s.Pass(ctx, subscription.Date{}, false)
		switch {
		case err == nil || ctx.Err() != nil:
			return
		case errors.Is(err, ErrLeaseHeld) && attempt == 0 && !waited:
			s.Log.Info("scheduler pass skipped: another replica holds the lease")
			waited = true
			if !s.awaitHolder(ctx, today) {
				return
			}
			s.Log.Warn("scheduler pass: the replica that held the lease let it go without finishing the pass; passing now")
			attempt = -1 // the pass and its retries, from the start
			continue
		case attempt == len(retries):
			s.Log.Error("scheduler pass failed; the next scheduled pass tries again", zap.Error(err))
			return
		}
		s.Log.Warn("scheduler pass failed; trying again", zap.Duration("in", retries[attempt]), zap.Error(err))
		select {
		case <-ctx.Done():
		case <-time.After(retries[attempt]):
		}
	}
}

// awaitHolder waits, after a scheduled pass was skipped for a lease held
// elsewhere, until the lease is free, and reports whether this replica
// should pass now: true when the holder let the lease go (or it expired,
// the holder dead) without recording today's pass as finished. Without it
// a replica that died mid-pass, or whose retries ran out, would leave the
// day's notices to the next scheduled pass, a day later, since a replica
// restarted while the dead one's lease is live skips its start-up pass.
func (s *Scheduler) awaitHolder(ctx context.Context, today subscription.Date) bool {
	if s.Lease == nil {
		return false
	}
	giveUp := time.Now().Add(holderWait) // the wall clock: s.Now may be stopped, as in tests
	tick := time.NewTicker(s.Lease.pollEvery())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		if held, err := s.Lease.held(ctx); err == nil && !held {
			done, err := s.Lease.done(ctx, today)
			if err == nil {
				if done {
					s.Log.Info("scheduler pass: the replica that held the lease finished it")
				}
				return !done
			}
		}
		if time.Now().After(giveUp) {
			s.Log.Warn("scheduler pass: another replica still holds the lease after an hour; the next scheduled pass tries again")
			return false
		}
	}
}

type cronLogger struct{ l *zap.Logger }

// Info logs cron's chatter at debug, except that a skipped run (the pass
// before it still running) is worth an info line.
func (c cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		c.l.Info("scheduled pass skipped: the previous pass is still running")
		return
	}
	c.l.Debug(msg, zap.Any("cron", kv))
}
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error(msg, zap.Error(err), zap.Any("cron", kv))
}
