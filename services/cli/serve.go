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
	"runtime/debug"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

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
	"renewals/services/bounces"
	"renewals/services/calllist"
	"renewals/services/notifier"
	"renewals/services/scheduler"
	"renewals/templates"
)

// serve wires the service by hand and runs the configured targets until ctx
// ends (SIGINT or SIGTERM), then shuts down cleanly: the HTTP server stops
// taking requests, the notifier finishes the sends in flight (or leaves them
// unacknowledged for redelivery), and the NATS connection drains. What can
// be refused is checked first, in this order: the configuration, the data
// dir's lock, the HTTP port, NATS, the state, the templates; no target runs
// before all of them have passed.
func serve(ctx context.Context, args []string, env Env) error {
	cfg, err := serveConfig(args, env)
	if err != nil {
		return err
	}
	log := newLogger(cfg, env.Stderr)
	defer log.Sync()
	if env.Environ != nil {
		for _, w := range config.Unknown(env.Environ()) {
			log.Warn(w)
		}
	}
	nofile, err := raiseOpenFiles()
	if err != nil {
		log.Warn("open-file limit", zap.Error(err))
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
	var bounceLn net.Listener
	if cfg.TargetSet["bounces"] {
		if bounceLn, err = listenBounces(cfg.BounceListen); err != nil {
			return err
		}
		defer bounceLn.Close()
	}
	bus, err := openBus(ctx, cfg, env.Stderr, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	st, err := openState(ctx, cfg, bus, log)
	if err != nil {
		return err
	}
	defer st.close()
	renderer, err := newRenderer(cfg)
	if err != nil {
		return err
	}
	w := &wiring{
		cfg: cfg, log: log, now: time.Now, bus: bus, state: st, renderer: renderer,
		metrics: metrics.New(cfg.Stages), passes: &passLog{},
		rules: calllist.Rules{Milestones: cfg.Stages, GraceDays: cfg.GraceDays, Location: cfg.Location, PostExpiry: cfg.PostExpiryStages},
	}
	if err := w.openLoop(); err != nil {
		return err
	}
	w.metrics.WatchConsumer(bus.JS, event.StreamName, notifier.DefaultConsumer.Durable)
	if w.bounces, err = w.bounceService(); err != nil {
		return err
	}
	sched, err := w.newScheduler(ctx)
	if err != nil {
		return err
	}

	// The targets, built before any of them runs; the group stops them all
	// when one fails or ctx ends.
	g, gctx := errgroup.WithContext(ctx)
	var targets []func(context.Context) error
	if cfg.TargetSet["calllist"] {
		targets = append(targets, w.calllistTarget())
	}
	if cfg.TargetSet["scheduler"] {
		targets = append(targets, w.schedulerTarget(sched))
	}
	if cfg.TargetSet["bounces"] {
		targets = append(targets, w.bouncesTarget(bounceLn))
	}
	if cfg.TargetSet["notifier"] {
		run, closeSender, err := w.notifierTarget(env)
		if err != nil {
			return err
		}
		defer closeSender()
		targets = append(targets, run)
	}
	// Every target serves /healthz, /readyz and /metrics; only the api
	// target serves /api.
	srv := w.apiServer(gctx, sched)
	if cfg.TargetSet["api"] {
		stopIngest, err := w.enableAPI(srv)
		if err != nil {
			return err
		}
		defer stopIngest()
		stopConsole, err := w.enableConsole(srv)
		if err != nil {
			return err
		}
		defer stopConsole()
	}
	for _, run := range targets {
		g.Go(func() error { return run(gctx) })
	}
	w.serveHTTP(gctx, g, srv, ln, nofile, env.Stderr)

	err = g.Wait()
	log.Info("shut down", zap.NamedError("cause", context.Cause(gctx)))
	return err
}

// serveConfig reads and checks serve's flags and environment.
func serveConfig(args []string, env Env) (*config.Config, error) {
	fs := newFlagSet("serve", "serve [--target all|scheduler|notifier|calllist|api|bounces[,...]] [flags]", env)
	cfg := config.Flags(fs, env.Getenv)
	if err := parse(fs, args, 0); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// wiring holds what the targets of one process share.
type wiring struct {
	cfg      *config.Config
	log      *zap.Logger
	now      func() time.Time
	bus      *natsbus.Bus
	state    state
	renderer *render.Renderer
	metrics  *metrics.Metrics
	passes   *passLog       // the last scheduler pass, for the console
	rules    calllist.Rules // the call list's, for its target and the API's reader
	loop     loop           // calls, renewal facts, the report, the morning lists (serve_loop.go)
	bounces  *bounces.Service
}

// openBus connects to the external NATS server, or starts the embedded one
// storing under the data dir and tells the person starting it how to
// subscribe.
func openBus(ctx context.Context, cfg *config.Config, stderr io.Writer, log *zap.Logger) (*natsbus.Bus, error) {
	bus, err := natsbus.Open(ctx, natsbus.Config{
		URL: cfg.NATSURL, Listen: cfg.NATSListen,
		StoreDir: filepath.Join(cfg.DataDir, "nats"), Name: "renewals " + cfg.Targets,
		Creds: cfg.NATSCreds, SecretsDir: cfg.DataDir, SyncInterval: cfg.NATSSyncInterval,
		Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	if bus.Server != nil {
		log.Info("embedded NATS started", zap.String("listen", bus.Server.ClientURL()))
		fmt.Fprintln(stderr, bus.Credentials.Hint(bus.Server.ClientURL()))
	}
	return bus, nil
}

// state is where subscriptions and the sent-ledger live.
type state struct {
	store  subscription.Store
	ledger subscription.Ledger
	// pingLedger is the ledger's write probe, for /readyz.
	pingLedger func(context.Context) error
	close      func()
}

// EmbeddedMemoryLimit is the soft memory limit (Go's GOMEMLIMIT) of a
// process that runs the embedded NATS server and keeps its state in it,
// unless GOMEMLIMIT is set.
const EmbeddedMemoryLimit = 320 << 20

// openState opens Redis when RENEWALS_REDIS_URL is set, else the embedded
// JetStream key-value store.
func openState(ctx context.Context, cfg *config.Config, bus *natsbus.Bus, log *zap.Logger) (state, error) {
	if cfg.RedisURL == "" {
		ks, kl, err := kvstore.NewWith(ctx, bus.JS, kvstore.Options{Replicas: cfg.Replicas})
		if err != nil {
			return state{}, err
		}
		if bus.Server != nil && os.Getenv("GOMEMLIMIT") == "" {
			// The embedded server's file store and the imports share this
			// process's heap; a soft limit makes the collector return what
			// a million-row import frees before the heap doubles.
			debug.SetMemoryLimit(EmbeddedMemoryLimit)
		}
		log.Info("state in the JetStream key-value store")
		return state{store: ks, ledger: kl, pingLedger: kl.Ping, close: func() {}}, nil
	}
	// go-redis logs pool events (a lost connection, a failed dial) with
	// the standard logger; they go to this process's log instead.
	redis.SetLogger(redisLog{log.Named("redis")})
	rs, rl, err := redisstore.Open(ctx, cfg.RedisURL)
	if err != nil {
		return state{}, err
	}
	log.Info("state in Redis")
	return state{store: rs, ledger: rl, pingLedger: rl.Ping, close: func() { rs.Close() }}, nil
}

// newRenderer compiles the email templates once; a bad one stops the start.
func newRenderer(cfg *config.Config) (*render.Renderer, error) {
	renderer, err := render.New(templates.FS, render.Reseller{
		Name: cfg.ResellerName, Phone: cfg.ResellerPhone, Email: cfg.ResellerEmail, Website: cfg.ResellerWebsite,
	})
	if err != nil {
		return nil, fmt.Errorf("email templates: %w", err)
	}
	if err := renderer.Check(); err != nil {
		return nil, fmt.Errorf("email templates: %w", err)
	}
	return renderer, nil
}

// newScheduler returns the scheduler, with a JetStream handle and a lease
// of its own. The API runs its manual passes whatever the targets.
func (w *wiring) newScheduler(ctx context.Context) (*scheduler.Scheduler, error) {
	s := &scheduler.Scheduler{
		Store: w.state.store, Ledger: w.state.ledger, Milestones: w.cfg.Stages, Location: w.cfg.Location, Now: w.now,
		Log: w.log.Named("scheduler"),
		Observe: func(res scheduler.Result, err error) {
			w.metrics.Pass(res.Duration, res.DryRun, err, w.now())
			w.passes.record(res, err, w.now())
			for _, k := range res.Keys {
				w.metrics.Due(k.Milestone)
			}
			w.afterPass(res, err)
		},
	}
	var err error
	if s.JS, err = natsbus.NewJetStream(w.bus.Conn); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if s.Lease, err = scheduler.NewLeaseReplicas(ctx, w.bus.JS, fmt.Sprintf("%s/%d", host, os.Getpid()), 10*time.Minute, w.cfg.Replicas); err != nil {
		return nil, err
	}
	return s, nil
}

// calllistTarget keeps the call list up to date from the events.
func (w *wiring) calllistTarget() func(context.Context) error {
	t := &calllist.Target{JS: w.bus.JS, Store: w.state.store, Rules: w.rules, Now: w.now, Log: w.log.Named("calllist"), Replicas: w.cfg.Replicas}
	return t.Run
}

// schedulerTarget runs a pass at start and then on RENEWALS_SCHEDULE.
func (w *wiring) schedulerTarget(s *scheduler.Scheduler) func(context.Context) error {
	return func(ctx context.Context) error { return s.Run(ctx, w.cfg.Schedule, config.CronParser) }
}

// notifierTarget sends the due notices through RENEWALS_SMTP_URL, or into
// the outbox. closeSender is for after it has stopped.
func (w *wiring) notifierTarget(env Env) (run func(context.Context) error, closeSender func(), err error) {
	outbox := filepath.Join(w.cfg.DataDir, "outbox")
	sender, err := mailer.Open(w.cfg.SMTPURL, fromWithName(w.cfg.MailFrom, w.cfg.ResellerName), outbox, w.now)
	if err != nil {
		return nil, nil, err // ParseURL and the outbox name the variable to fix
	}
	if w.cfg.SMTPURL == "" {
		w.log.Info("emails written to the outbox", zap.String("dir", outbox))
	}
	envelope, err := w.envelope()
	if err != nil {
		sender.Close()
		return nil, nil, err
	}
	if e, ok := sender.(mailer.Enveloper); ok {
		e.SetEnvelope(envelope)
	}
	n := &notifier.Notifier{
		JS: w.bus.JS, Store: w.state.store, Ledger: w.state.ledger, Sender: sender, Renderer: w.renderer,
		Milestones: w.cfg.Stages, Location: w.cfg.Location, Now: w.now, Log: w.log.Named("notifier"),
		Consumer: consumerConfig(w.cfg.AckWait), Workers: w.cfg.Workers, Drain: w.cfg.Drain,
		Pause: faultPause(env), Observe: w.metrics.Outcome, Suppressed: w.bounces.Suppressed,
		SuppressedMany: w.bounces.SuppressedMany,
	}
	return n.Run, func() { sender.Close() }, nil
}

// consumerConfig is the notifier's consumer with RENEWALS_ACK_WAIT: claims
// last 1.5 times the ack wait, and a shorter ack wait (fault tests, demos)
// shortens the retry back-off in proportion, so a retried notice is not
// held for minutes.
func consumerConfig(ackWait time.Duration) notifier.ConsumerConfig {
	c := notifier.DefaultConsumer
	def := c.AckWait
	c.AckWait, c.Lease = ackWait, ackWait*3/2
	if ackWait < def {
		c.BackOff = make([]time.Duration, len(notifier.DefaultConsumer.BackOff))
		for i, d := range notifier.DefaultConsumer.BackOff {
			c.BackOff[i] = time.Duration(float64(d) * float64(ackWait) / float64(def))
		}
	}
	return c
}

// apiServer is the HTTP server of every target: health, readiness and
// metrics always, the API and the console once enableAPI has run. stopping
// ends with the process, so that event streams and waits answer at once.
func (w *wiring) apiServer(stopping context.Context, sched *scheduler.Scheduler) *api.Server {
	store, bus := w.state.store, w.bus
	srv := &api.Server{
		Store: store, Ledger: w.state.ledger, JS: bus.JS, Scheduler: schedulerForAPI(sched), Renderer: w.renderer,
		Location: w.cfg.Location, Now: w.now, Log: w.log.Named("api"),
		Stopping: stopping, MaxImportBytes: w.cfg.MaxImportBytes, GraceDays: w.cfg.GraceDays, WaitTimeout: 30 * time.Minute,
		APIDisabled: true, OutboxDir: filepath.Join(w.cfg.DataDir, "outbox"),
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
			if err := w.state.pingLedger(ctx); err != nil {
				return fmt.Errorf("the ledger does not accept a write: %w", err)
			}
			return nil
		},
	}
	srv.Metrics, srv.OnImport = w.metrics.Handler(), w.metrics.Import
	srv.Bounces = w.bounces
	srv.Calllist = &calllist.Handler{
		Lister: &calllist.Lister{JS: bus.JS, Store: store, Rules: w.rules, Now: w.now}, Log: w.log.Named("calllist"),
	}
	srv.Events = &calllist.EventStream{JS: bus.JS, Log: w.log.Named("events"), Context: stopping}
	w.loopRoutes(srv)
	return srv
}

// enableAPI turns on the api target: /api and the console behind the API
// token, and the CRM's ingest subject on NATS.
func (w *wiring) enableAPI(srv *api.Server) (stopIngest func(), err error) {
	if srv.Token, err = apiToken(w.cfg); err != nil {
		return nil, err
	}
	srv.APIDisabled = false
	return api.ServeIngest(w.bus.Conn, srv)
}

// serveHTTP serves srv on ln in g until ctx ends, then gives the requests
// under way RENEWALS_DRAIN to finish. It announces the address on stderr,
// where scripts and tests wait for it.
func (w *wiring) serveHTTP(ctx context.Context, g *errgroup.Group, srv *api.Server, ln net.Listener, nofile uint64, stderr io.Writer) {
	conns := api.ConnLimit(nofile)
	ln = api.LimitListener(ln, conns, api.PerClientConns)
	hs := srv.HTTPServer()
	w.log.Info("HTTP listening", zap.String("addr", ln.Addr().String()),
		zap.Uint64("open_file_limit", nofile), zap.Int("max_connections", conns), zap.Int("max_connections_per_client", api.PerClientConns))
	fmt.Fprintf(stderr, "renewals: serving %s on http://%s", w.cfg.Targets, ln.Addr())
	if w.cfg.TargetSet["api"] {
		fmt.Fprintf(stderr, " (API token in %s)", tokenSource(w.cfg))
	}
	fmt.Fprintln(stderr)
	if w.cfg.TargetSet["api"] {
		fmt.Fprintf(stderr, "renewals: console at http://%s/: sign in with the API token (%s)\n", ln.Addr(), tokenSource(w.cfg))
	}
	g.Go(func() error {
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), w.cfg.Drain)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			w.log.Warn("HTTP requests still open after the drain time; closing them", zap.Duration("drain", w.cfg.Drain))
			_ = hs.Close()
		}
		return nil
	})
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

// newLogger logs JSON lines, or console lines for `make run` (their levels
// coloured when stderr is a terminal), to stderr, from RENEWALS_LOG_LEVEL up.
func newLogger(cfg *config.Config, stderr io.Writer) *zap.Logger {
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(stderr)), cfg.Level))
}
