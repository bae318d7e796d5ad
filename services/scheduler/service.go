package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"renewals/pkg/subscription"
)

// Run runs a pass at once (robfig/cron does not catch up on runs missed while
// the process was down), then on spec in the scheduler's zone, until ctx
// ends. A pass that panics is recovered and logged; a pass still running
// when the next is due makes the next one skip.
func (s *Scheduler) Run(ctx context.Context, spec string, parser cron.Parser) error {
	logger := cronLogger{s.Log}
	c := cron.New(
		cron.WithLocation(s.Location),
		cron.WithParser(parser),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)),
	)
	job := cron.FuncJob(func() { s.scheduled(ctx) })
	if _, err := c.AddJob(spec, job); err != nil {
		return fmt.Errorf("RENEWALS_SCHEDULE %q: %w", spec, err)
	}
	c.Start()
	// The start-up pass goes through the same chain, so it too is recovered
	// and never overlaps the first scheduled one.
	go c.Entries()[0].WrappedJob.Run()
	<-ctx.Done()
	<-c.Stop().Done()
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

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug(msg, zap.Any("cron", kv)) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error(msg, zap.Error(err), zap.Any("cron", kv))
}
