package cli

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"renewals/pkg/event"
	"renewals/pkg/mailer"
	"renewals/services/api"
	"renewals/services/calllist"
	"renewals/services/console"
	"renewals/services/report"
	"renewals/services/scheduler"
)

// usersFile is RENEWALS_USERS_FILE, else <data dir>/users.
func usersFile(explicit, dataDir string) string {
	if explicit != "" {
		return explicit
	}
	return filepath.Join(dataDir, "users")
}

// enableConsole serves the web console beside /api on the api target,
// through the API's own import, erase, call list, forecast and event
// stream. stop ends its watch of the notice outcomes.
func (w *wiring) enableConsole(srv *api.Server) (stop func(), err error) {
	c := &console.Console{
		Store: srv.Store, Ledger: srv.Ledger, Scheduler: srv.Scheduler, Renderer: srv.Renderer,
		Location: w.cfg.Location, Now: w.now, Log: w.log.Named("console"), GraceDays: w.cfg.GraceDays,
		Token: srv.Token, UsersFile: usersFile(w.cfg.UsersFile, w.cfg.DataDir),
		Import: srv.Import, Erase: srv.Erase, ErrorStatus: api.StatusOf, MaxImportBytes: srv.MaxImportBytes,
		Events: srv.Events, Metrics: w.metrics.Registry, LastPass: w.passes.last,
		Health: w.health, Context: srv.Stopping,
		LastSeq: func(ctx context.Context) (uint64, error) {
			st, err := w.bus.JS.Stream(ctx, event.StreamName)
			if err != nil {
				return 0, err
			}
			info, err := st.Info(ctx)
			if err != nil {
				return 0, err
			}
			return info.State.LastSeq, nil
		},
	}
	if h, ok := srv.Calllist.(*calllist.Handler); ok {
		c.Lister = h.Lister
	}
	if h, ok := srv.Report.(*report.Handler); ok {
		c.Report = h.Builder
	}
	stop, err = c.Watch(w.bus.Conn)
	if err != nil {
		return nil, err
	}
	srv.Console = c.Handler()
	return stop, nil
}

// passLog remembers the last scheduler pass of this process, for the
// console's overview.
type passLog struct {
	mu  sync.Mutex
	res scheduler.Result
	at  time.Time
	ok  bool
}

func (p *passLog) record(res scheduler.Result, err error, at time.Time) {
	if err != nil || res.DryRun {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	res.Notices, res.Keys, res.DuplicateKeys = nil, nil, nil
	p.res, p.at, p.ok = res, at, true
}

func (p *passLog) last() (scheduler.Result, time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.res, p.at, p.ok
}

// health is the overview's health panel: NATS, the store and the ledger,
// and the SMTP relay (reached with a TCP connection, nothing sent).
func (w *wiring) health(ctx context.Context) []console.Check {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var out []console.Check
	nats := console.Check{Name: "NATS", OK: true, Detail: "connected to " + w.bus.Conn.ConnectedUrlRedacted()}
	if !w.bus.Conn.IsConnected() {
		nats = console.Check{Name: "NATS", Detail: "not connected: the service cannot publish or take notices"}
	} else if info, err := w.bus.JS.AccountInfo(ctx); err != nil {
		nats = console.Check{Name: "NATS", Detail: "JetStream does not answer: " + err.Error()}
	} else {
		nats.Detail += fmt.Sprintf("; JetStream holds %d streams, %d consumers", info.Streams, info.Consumers)
	}
	out = append(out, nats)
	kind := "the JetStream key-value store"
	if w.cfg.RedisURL != "" {
		kind = "Redis"
	}
	store := console.Check{Name: "Store", OK: true, Detail: kind + " accepts writes"}
	if err := w.state.store.Ping(ctx); err != nil {
		store = console.Check{Name: "Store", Detail: kind + " does not accept a write: " + err.Error()}
	} else if err := w.state.pingLedger(ctx); err != nil {
		store = console.Check{Name: "Store", Detail: "the ledger in " + kind + " does not accept a write: " + err.Error()}
	}
	out = append(out, store)
	smtp := console.Check{Name: "SMTP", OK: true, Detail: "no relay set (RENEWALS_SMTP_URL): emails go to the outbox"}
	if w.cfg.SMTPURL != "" {
		cfg, err := mailer.ParseURL(w.cfg.SMTPURL)
		if err != nil {
			smtp = console.Check{Name: "SMTP", Detail: err.Error()}
		} else {
			addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				smtp = console.Check{Name: "SMTP", Detail: "the relay at " + addr + " cannot be reached: " + err.Error()}
			} else {
				conn.Close()
				smtp.Detail = "the relay at " + addr + " answers"
			}
		}
	}
	return append(out, smtp)
}
