package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"renewals/pkg/subscription"
)

// Run runs a pass at once (robfig/cron does not catch up on runs missed while
// the process was down), then on spec in the scheduler's zone (a CRON_TZ=
// prefix in spec overrides it), until ctx ends. A pass that panics is
// recovered and logged; a pass still running when the next is due makes the
// next one skip. Run returns once no pass is running any more, the start-up
// pass included, so the caller may close the store and the bus after it.
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

func (s *Scheduler) scheduled(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	if _, err := s.Pass(ctx, subscription.Date{}, false); err != nil {
		if errors.Is(err, ErrLeaseHeld) {
			s.Log.Info("scheduler pass skipped: another replica holds the lease")
			return
		}
		s.Log.Error("scheduler pass failed", zap.Error(err))
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
