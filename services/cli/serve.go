package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"renewals/pkg/config"
	"renewals/pkg/event"
	"renewals/pkg/kvstore"
	"renewals/pkg/mailer"
	"renewals/pkg/metrics"
	"renewals/pkg/natsbus"
	"renewals/pkg/redisstore"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/services/api"
	"renewals/services/calllist"
	"renewals/services/notifier"
	"renewals/services/scheduler"
	"renewals/templates"
)

// serve wires the service by hand and runs the configured targets until ctx
// ends (SIGINT or SIGTERM), then shuts down cleanly: the HTTP server stops
// taking requests, the notifier finishes the sends in flight (or leaves them
// unacknowledged for redelivery), and the NATS connection drains.
func serve(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("serve", "serve [--target all|scheduler|notifier|calllist|api[,...]] [flags]", env)
	cfg := config.Flags(fs, env.Getenv)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(cfg, env.Stderr)
	defer log.Sync()
	now := time.Now
	nofile, err := raiseOpenFiles()
	if err != nil {
		log.Warn("open-file limit", zap.Error(err))
	}

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("cannot create the data dir %s: %v; set RENEWALS_DATA_DIR to a writable directory", cfg.DataDir, err)
	}
	if env.Environ != nil {
		for _, w := range config.Unknown(env.Environ()) {
			log.Warn(w)
		}
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	// The HTTP port first: a port in use stops the start before anything
	// else has started (and logged errors of its own).
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (%v): is another renewals running? set RENEWALS_HTTP_ADDR", cfg.HTTPAddr, err)
	}
	defer ln.Close()

	// NATS: external, or embedded storing under the data dir.
	bus, err := natsbus.Open(ctx, natsbus.Config{
		URL: cfg.NATSURL, Listen: cfg.NATSListen,
		StoreDir: filepath.Join(cfg.DataDir, "nats"), Name: "renewals " + cfg.Targets,
		Creds: cfg.NATSCreds, SecretsDir: cfg.DataDir, SyncInterval: cfg.NATSSyncInterval,
	})
	if err != nil {
		return err
	}
	defer bus.Close()
	if bus.Server != nil {
		log.Info("embedded NATS started", zap.String("listen", bus.Server.ClientURL()))
		fmt.Fprintln(env.Stderr, bus.Credentials.Hint(bus.Server.ClientURL()))
	}

	// State: Redis, or the embedded JetStream key-value store.
	var store subscription.Store
	var ledger subscription.Ledger
	var pingLedger func(context.Context) error // the ledger's write probe, for /readyz
	if cfg.RedisURL != "" {
		// go-redis logs pool events (a lost connection, a failed dial) with
		// the standard logger; they go to this process's log instead.
		redis.SetLogger(redisLog{log.Named("redis")})
		rs, rl, err := redisstore.Open(ctx, cfg.RedisURL)
		if err != nil {
			return err
		}
		defer rs.Close()
		store, ledger, pingLedger = rs, rl, rl.Ping
		log.Info("state in Redis")
	} else {
		ks, kl, err := kvstore.New(ctx, bus.JS)
		if err != nil {
			return err
		}
		store, ledger, pingLedger = ks, kl, kl.Ping
		log.Info("state in the JetStream key-value store")
	}

	renderer, err := render.New(templates.FS, render.Reseller{
		Name: cfg.ResellerName, Phone: cfg.ResellerPhone, Email: cfg.ResellerEmail, Website: cfg.ResellerWebsite,
	})
	if err != nil {
		return fmt.Errorf("email templates: %w", err)
	}
	if err := renderer.Check(); err != nil {
		return fmt.Errorf("email templates: %w", err)
	}

	sched := &scheduler.Scheduler{
		Store: store, Ledger: ledger, Milestones: cfg.Stages, Location: cfg.Location, Now: now,
		Log: log.Named("scheduler"),
	}
	if sched.JS, err = natsbus.NewJetStream(bus.Conn); err != nil {
		return err
	}
	host, _ := os.Hostname()
	if sched.Lease, err = scheduler.NewLease(ctx, bus.JS, fmt.Sprintf("%s/%d", host, os.Getpid()), 10*time.Minute); err != nil {
		return err
	}

	g, gctx := newGroup(ctx)

	// Metrics on a registry of their own; the call list rules shared by the
	// calllist target and the API's reader.
	m := metrics.New(cfg.Stages)
	m.WatchConsumer(bus.JS, event.StreamName, notifier.DefaultConsumer.Durable)
	sched.Observe = func(res scheduler.Result, err error) {
		m.Pass(res.Duration, res.DryRun, err, now())
		for _, k := range res.Keys {
			m.Due(k.Milestone)
		}
	}
	rules := calllist.Rules{Milestones: cfg.Stages, GraceDays: cfg.GraceDays, Location: cfg.Location}
	if cfg.TargetSet["calllist"] {
		t := &calllist.Target{JS: bus.JS, Store: store, Rules: rules, Now: now, Log: log.Named("calllist")}
		g.Go(func() error { return t.Run(gctx) })
	}

	if cfg.TargetSet["scheduler"] {
		g.Go(func() error { return sched.Run(gctx, cfg.Schedule, config.CronParser) })
	}

	if cfg.TargetSet["notifier"] {
		sender, err := mailer.Open(cfg.SMTPURL, fromWithName(cfg.MailFrom, cfg.ResellerName), filepath.Join(cfg.DataDir, "outbox"), now)
		if err != nil {
			return err // ParseURL and the outbox name the variable to fix
		}
		if cfg.SMTPURL == "" {
			log.Info("emails written to the outbox", zap.String("dir", filepath.Join(cfg.DataDir, "outbox")))
		}
		defer sender.Close()
		ackWait := cfg.AckWait
		consumer := notifier.DefaultConsumer
		consumer.AckWait = ackWait
		consumer.Lease = ackWait * 3 / 2
		if ackWait < notifier.DefaultConsumer.AckWait {
			// A shorter ack wait (fault tests, demos) shortens the retry
			// back-off in proportion, so a retried notice is not held for minutes.
			consumer.BackOff = make([]time.Duration, len(notifier.DefaultConsumer.BackOff))
			for i, d := range notifier.DefaultConsumer.BackOff {
				consumer.BackOff[i] = time.Duration(float64(d) * float64(ackWait) / float64(notifier.DefaultConsumer.AckWait))
			}
		}
		n := &notifier.Notifier{
			JS: bus.JS, Store: store, Ledger: ledger, Sender: sender, Renderer: renderer,
			Milestones: cfg.Stages, Location: cfg.Location, Now: now, Log: log.Named("notifier"),
			Consumer: consumer, Workers: cfg.Workers, Drain: cfg.Drain, Pause: faultPause(env), Observe: m.Outcome,
		}
		g.Go(func() error { return n.Run(gctx) })
	}

	// Every target serves /healthz, /readyz and /metrics; only the api
	// target serves /api.
	srv := &api.Server{
		Store: store, Ledger: ledger, JS: bus.JS, Scheduler: schedulerForAPI(sched), Renderer: renderer,
		Location: cfg.Location, Now: now, Log: log.Named("api"),
		Stopping: gctx, MaxImportBytes: cfg.MaxImportBytes, GraceDays: cfg.GraceDays, WaitTimeout: 30 * time.Minute, APIDisabled: !cfg.TargetSet["api"],
		OutboxDir: filepath.Join(cfg.DataDir, "outbox"),
		Ready: func(ctx context.Context) error {
			if !bus.Conn.IsConnected() {
				return errors.New("NATS is not connected")
			}
			if _, err := bus.JS.AccountInfo(ctx); err != nil {
				return fmt.Errorf("JetStream: %w", err)
			}
			if err := store.Ping(ctx); err != nil {
				return fmt.Errorf("the store does not accept a write: %w", err)
			}
			if err := pingLedger(ctx); err != nil {
				return fmt.Errorf("the ledger does not accept a write: %w", err)
			}
			return nil
		},
	}
	srv.Metrics, srv.OnImport = m.Handler(), m.Import
	srv.Calllist = &calllist.Handler{
		Lister: &calllist.Lister{JS: bus.JS, Store: store, Rules: rules, Now: now}, Log: log.Named("calllist"),
	}
	srv.Events = &calllist.EventStream{JS: bus.JS, Log: log.Named("events"), Context: gctx}
	if cfg.TargetSet["api"] {
		if srv.Token, err = apiToken(cfg); err != nil {
			return err
		}
		stopIngest, err := api.ServeIngest(bus.Conn, srv)
		if err != nil {
			return err
		}
		defer stopIngest()
	}
	conns := api.ConnLimit(nofile)
	ln = api.LimitListener(ln, conns, api.PerClientConns)
	hs := srv.HTTPServer()
	log.Info("HTTP listening", zap.String("addr", ln.Addr().String()),
		zap.Uint64("open_file_limit", nofile), zap.Int("max_connections", conns), zap.Int("max_connections_per_client", api.PerClientConns))
	fmt.Fprintf(env.Stderr, "renewals: serving %s on http://%s", cfg.Targets, ln.Addr())
	if cfg.TargetSet["api"] {
		fmt.Fprintf(env.Stderr, " (API token in %s)", tokenSource(cfg))
	}
	fmt.Fprintln(env.Stderr)
	g.Go(func() error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Drain)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			log.Warn("HTTP requests still open after the drain time; closing them", zap.Duration("drain", cfg.Drain))
			_ = hs.Close()
		}
		return nil
	})

	err = g.Wait()
	log.Info("shut down", zap.NamedError("cause", context.Cause(gctx)))
	return err
}

// redisLog is go-redis's logger writing to zap.
type redisLog struct{ l *zap.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// fromWithName gives the From address the reseller's name as display name
// when RENEWALS_MAIL_FROM carries none ("Acme Software Ltd"
// <renewals@acme.example>): the customer sees who writes. An address that
// does not parse is left for the mailer to refuse with its own sentence.
func fromWithName(from, name string) string {
	a, err := mail.ParseAddress(from)
	if err != nil || a.Name != "" || strings.TrimSpace(name) == "" {
		return from
	}
	a.Name = strings.TrimSpace(name)
	return a.String()
}

// schedulerForAPI is the scheduler as the API runs it: a manual pass waits
// for another replica's pass to finish instead of failing.
func schedulerForAPI(s *scheduler.Scheduler) *scheduler.Scheduler {
	c := *s
	if s.Lease != nil {
		l := *s.Lease
		l.Wait = true
		c.Lease = &l
	}
	return &c
}

// apiToken returns RENEWALS_API_TOKEN, else the token saved under the data
// dir, generating it (mode 0600) on first start.
func apiToken(cfg *config.Config) (string, error) {
	if cfg.APIToken != "" {
		return cfg.APIToken, nil
	}
	path := filepath.Join(cfg.DataDir, "api-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("generate API token: %w", err)
	}
	token := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save API token to %s: %w", path, err)
	}
	return token, nil
}

func tokenSource(cfg *config.Config) string {
	if cfg.APIToken != "" {
		return "RENEWALS_API_TOKEN"
	}
	return filepath.Join(cfg.DataDir, "api-token")
}

// newLogger logs JSON lines, or coloured console lines for `make run`, to
// stderr, from RENEWALS_LOG_LEVEL up.
func newLogger(cfg *config.Config, stderr io.Writer) *zap.Logger {
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(stderr)), cfg.Level))
}

// group runs goroutines until the first fails or ctx ends; then the
// context it hands them is cancelled and Wait returns the first error.
type group struct {
	wg     sync.WaitGroup
	cancel context.CancelCauseFunc
	once   sync.Once
	err    error
}

func newGroup(ctx context.Context) (*group, context.Context) {
	ctx, cancel := context.WithCancelCause(ctx)
	return &group{cancel: cancel}, ctx
}

func (g *group) Go(f func() error) {
	g.wg.Go(func() {
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err })
			g.cancel(err)
		}
	})
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel(nil)
	return g.err
}
