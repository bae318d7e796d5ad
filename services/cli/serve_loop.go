package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/calls"
	"renewals/pkg/subscription"
	"renewals/services/api"
	"renewals/services/calllist"
	"renewals/services/morning"
	"renewals/services/report"
	"renewals/services/scheduler"
	"renewals/templates"
)

// loop is the renewal team's side of a process: recorded calls, the
// renewal facts that the report counts, and the reps' morning lists.
type loop struct {
	calls    subscription.CallStore
	renewals subscription.RenewalLog
	// recording is the store as the API writes it: every upsert (import,
	// PUT, the CRM's ingest, a call's status) records its renewals. The
	// other targets only read subscriptions, and keep the store itself
	// (whose other interfaces, such as the suppression list, they use).
	recording *calls.RecordingStore
	morning   *morning.Sender // nil without RENEWALS_REPS_FILE
}

// openLoop prepares the store wrapper that records renewals and the
// morning lists.
func (w *wiring) openLoop() error {
	cs, ok1 := w.state.store.(subscription.CallStore)
	rl, ok2 := w.state.store.(subscription.RenewalLog)
	if !ok1 || !ok2 {
		return fmt.Errorf("the store %T keeps no calls or renewals", w.state.store)
	}
	w.loop = loop{calls: cs, renewals: rl, recording: &calls.RecordingStore{
		Store: w.state.store, Log: rl, PostExpiry: w.cfg.PostExpiryStages, Location: w.cfg.Location, Now: w.now,
	}}
	if w.cfg.RepsFile == "" {
		return nil
	}
	reps, err := morning.ReadReps(w.cfg.RepsFile)
	if err != nil {
		return err
	}
	name := "Renewals call list"
	if w.cfg.ResellerName != "" {
		name = w.cfg.ResellerName + " call list"
	}
	mail, err := morning.NewGoMail(w.cfg.SMTPURL, w.cfg.MailFrom, name, filepath.Join(w.cfg.DataDir, "outbox"), w.now)
	if err != nil {
		return err
	}
	s := &morning.Sender{
		Reps: reps, JS: w.bus.JS, Mail: mail, Reseller: w.cfg.ResellerName, Now: w.now, Log: w.log.Named("morning"),
		Lister: &calllist.Lister{JS: w.bus.JS, Store: w.state.store, Rules: w.rules, Now: w.now},
	}
	if err := s.LoadTemplates(templates.MorningFS); err != nil {
		return err
	}
	w.loop.morning = s
	w.log.Info("morning lists on", zap.Int("reps", len(reps)))
	return nil
}

// loopRoutes adds the calls and the report to the API, and has it write
// through the recording store.
func (w *wiring) loopRoutes(srv *api.Server) {
	srv.Store = w.loop.recording
	svc := &calls.Service{Store: w.loop.recording, Calls: w.loop.calls, JS: w.bus.JS, Location: w.cfg.Location, Now: w.now}
	srv.Calls = &calls.Handler{Service: svc, Log: w.log.Named("calls")}
	srv.Report = &report.Handler{Log: w.log.Named("report"), Builder: &report.Builder{
		Store: w.state.store, Ledger: w.state.ledger, Calls: w.loop.calls, Renewals: w.loop.renewals,
		PostExpiry: w.cfg.PostExpiryStages, Location: w.cfg.Location, Now: w.now,
	}}
}

// afterPass sends the morning lists for the pass's day (its as-of date, or
// today) after every pass that is not a dry run: the daily pass runs in the
// morning, and a later pass the same day finds them sent.
func (w *wiring) afterPass(res scheduler.Result, err error) {
	if w.loop.morning == nil || err != nil || res.DryRun {
		return
	}
	day := res.AsOf
	if day.IsZero() {
		day = subscription.Today(w.now(), w.cfg.Location)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, _ = w.loop.morning.Send(ctx, day) // logged by Send; tried again on the next pass
}
