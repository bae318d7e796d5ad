package cli

import (
	"context"
	"fmt"
	"net"

	"go.uber.org/zap"

	"renewals/pkg/bounce"
	"renewals/pkg/mailer"
	"renewals/services/bounces"
)

// bounceService builds what handles bounces, suppressions and resends. It
// always runs (a failed notice can be resent without a bounce domain); the
// envelope sender and the receiver need RENEWALS_BOUNCE_DOMAIN.
func (w *wiring) bounceService() (*bounces.Service, error) {
	secret, err := bounce.LoadSecret(w.cfg.BounceSecret, w.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	tagger, err := bounce.NewTagger(w.cfg.BounceDomain, secret)
	if err != nil {
		return nil, err
	}
	svc := &bounces.Service{
		Store: w.state.store, Ledger: w.state.ledger, Tagger: tagger, JS: w.bus.JS, Now: w.now,
		Location: w.cfg.Location, Log: w.log.Named("bounces"), Observe: w.metrics.Bounces(),
	}
	if err := svc.Check(); err != nil {
		return nil, err
	}
	return svc, nil
}

// envelope is what the notifier's sender adds to each notice: the
// per-notice bounce address when RENEWALS_BOUNCE_DOMAIN is set, and the
// DKIM signature when RENEWALS_DKIM_KEY_FILE is.
func (w *wiring) envelope() (mailer.Envelope, error) {
	var env mailer.Envelope
	if t := w.bounces.Tagger; t.Domain != "" {
		env.ReturnPath = func(m mailer.Message) string { return t.ReturnPath(m.Key, m.To) }
	}
	if w.cfg.DKIMKeyFile != "" {
		d, err := mailer.LoadDKIM(w.cfg.DKIMKeyFile, w.cfg.DKIMSelector, w.cfg.MailFrom)
		if err != nil {
			return env, err
		}
		env.DKIM = d
		w.log.Info("notices signed with DKIM", zap.String("domain", d.Domain), zap.String("selector", d.Selector))
	}
	return env, nil
}

// listenBounces opens the receiver's port, so that a port in use stops the
// start before anything runs.
func listenBounces(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s for bounces (%v): set RENEWALS_BOUNCE_LISTEN to a free address", addr, err)
	}
	return ln, nil
}

// bouncesTarget runs the SMTP receiver of the bounce addresses on ln.
func (w *wiring) bouncesTarget(ln net.Listener) func(context.Context) error {
	r := &bounces.Receiver{Service: w.bounces, Log: w.log.Named("bounces")}
	w.log.Info("bounce receiver listening", zap.String("addr", ln.Addr().String()), zap.String("domain", w.bounces.Tagger.Domain))
	return func(ctx context.Context) error { return r.Serve(ctx, ln) }
}
