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
// again after each of Retries' waits; one that panics is recovered and
// logged; a pass still running when the next is due makes the next one
// skip. Run returns once no pass is running any more, the start-up pass
// included, so the caller may close the store and the bus after it.
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

func (s *Scheduler) scheduled(ctx context.Context) {
	retries := s.Retries
	if retries == nil {
		retries = DefaultRetries
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		_, err := s.Pass(ctx, subscription.Date{}, false)
		switch {
		case err == nil || ctx.Err() != nil:
			return
		case errors.Is(err, ErrLeaseHeld) && attempt == 0:
			s.Log.Info("scheduler pass skipped: another replica holds the lease")
			return
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
