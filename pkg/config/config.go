// Package config reads the renewals configuration from RENEWALS_* environment
// variables and command-line flags. Flags override the environment; every
// variable has a flag. Validation happens here, once, at start: an invalid
// zone, cron spec or milestone list stops the program with a clear message
// and never falls back to a default silently.
package config

import (
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap/zapcore"

	"renewals/pkg/mailer"
	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
)

// Config is the validated configuration of `renewals serve`.
type Config struct {
	DataDir    string
	HTTPAddr   string
	NATSURL    string
	NATSListen string
	NATSCreds  string
	NATSSync   string
	RedisURL   string
	SMTPURL    string
	MailFrom   string
	APIToken   string
	// UsersFile holds the console's named users (name:bcrypt-hash:role a
	// line); empty means <data dir>/users.
	UsersFile  string
	Timezone   string
	Milestones string
	Schedule   string
	GraceDays  int
	// PostExpiry is RENEWALS_POST_EXPIRY, read into PostExpiryStages.
	PostExpiry string
	// RepsFile is RENEWALS_REPS_FILE: the reps for the morning lists.
	RepsFile  string
	LogFormat string
	LogLevel  string
	Targets   string
	// Drain is how long shutdown waits for sends and requests under way.
	Drain time.Duration
	// Workers is how many notices the notifier handles at once.
	Workers int
	// Replicas is how many copies a NATS cluster keeps of the RENEWALS
	// stream and of every key-value bucket and stream of the service.
	Replicas int
	// AckWait is how long a notice may go unacknowledged before JetStream
	// redelivers it.
	AckWait time.Duration
	// MaxImportBytes is the largest import body the API accepts.
	MaxImportBytes int64

	// BounceDomain, when set, gives each notice the envelope sender
	// bounce+<tag>@BounceDomain; BounceListen is where the bounces target's
	// SMTP receiver listens; BounceSecret is the tags' HMAC key (empty:
	// generated into <data dir>/bounce-secret).
	BounceDomain string
	BounceListen string
	BounceSecret string
	// DKIMKeyFile and DKIMSelector, when set, sign every notice.
	DKIMKeyFile  string
	DKIMSelector string

	ResellerName    string
	ResellerPhone   string
	ResellerEmail   string
	ResellerWebsite string

	// Derived by Validate.
	Location *time.Location
	Stages   subscription.Milestones
	// PostExpiryStages is PostExpiry parsed.
	PostExpiryStages subscription.PostExpiry
	TargetSet        map[string]bool
	Level            zapcore.Level

	// NATSSyncInterval is NATSSync read by Validate; 0 syncs every write.
	NATSSyncInterval time.Duration

	// badEnv is the first variable Flags could not read, reported by
	// Validate rather than replaced by the default silently.
	badEnv error
}

// Defaults of the settings that are not strings.
const (
	DefaultGraceDays      = 30
	DefaultDrain          = 10 * time.Second
	DefaultWorkers        = 256
	DefaultReplicas       = 1
	MaxReplicas           = 5 // JetStream's limit
	DefaultAckWait        = 30 * time.Second
	DefaultMaxImportBytes = 1 << 30
)

// Targets a `serve` process can run.
var Targets = []string{"scheduler", "notifier", "calllist", "api", "bounces"}

// Flags registers every setting on fs, with the environment (read through
// getenv) supplying the defaults, and returns the Config the flags fill.
func Flags(fs *flag.FlagSet, getenv func(string) string) *Config {
	c := &Config{}
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.DataDir, "data-dir", env("RENEWALS_DATA_DIR", "./data"), "directory for embedded NATS storage, the outbox and the generated API token (RENEWALS_DATA_DIR)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("RENEWALS_HTTP_ADDR", "127.0.0.1:8080"), "address of the API, /metrics, /healthz and /readyz (RENEWALS_HTTP_ADDR)")
	fs.StringVar(&c.NATSURL, "nats-url", env("RENEWALS_NATS_URL", ""), "external NATS server, or the servers of a cluster comma-separated; empty starts an embedded one (RENEWALS_NATS_URL)")
	fs.IntVar(&c.Replicas, "replicas", c.envInt(getenv, "RENEWALS_REPLICAS", DefaultReplicas), "copies a NATS cluster keeps of the RENEWALS stream and of every bucket: 1, or 3 on a cluster of three (RENEWALS_REPLICAS)")
	fs.StringVar(&c.NATSListen, "nats-listen", env("RENEWALS_NATS_LISTEN", "127.0.0.1:4223"), "where the embedded NATS server listens (RENEWALS_NATS_LISTEN)")
	fs.StringVar(&c.NATSCreds, "nats-creds", env("RENEWALS_NATS_CREDS", ""), "credentials file (user JWT and seed) for the external NATS server (RENEWALS_NATS_CREDS)")
	fs.StringVar(&c.NATSSync, "nats-sync", env("RENEWALS_NATS_SYNC", "always"), "when the embedded NATS server fsyncs JetStream: always (every write, before it is acknowledged) or an interval such as 2m (RENEWALS_NATS_SYNC)")
	fs.StringVar(&c.RedisURL, "redis-url", env("RENEWALS_REDIS_URL", ""), "Redis for subscriptions and the sent-ledger; empty keeps them in the embedded JetStream key-value store (RENEWALS_REDIS_URL)")
	fs.StringVar(&c.SMTPURL, "smtp-url", env("RENEWALS_SMTP_URL", ""), "SMTP server, e.g. smtp://user:pass@host:587?tls=starttls; empty writes .eml files to <data dir>/outbox (RENEWALS_SMTP_URL)")
	fs.StringVar(&c.MailFrom, "mail-from", env("RENEWALS_MAIL_FROM", "renewals@localhost"), "From address of the notices (RENEWALS_MAIL_FROM)")
	fs.StringVar(&c.APIToken, "api-token", env("RENEWALS_API_TOKEN", ""), "bearer token for /api; empty generates one into <data dir>/api-token (RENEWALS_API_TOKEN)")
	fs.StringVar(&c.UsersFile, "users-file", env("RENEWALS_USERS_FILE", ""), "the web console's users, one name:bcrypt-hash:role a line (role viewer or operator), written by 'renewals user add'; empty means <data dir>/users (RENEWALS_USERS_FILE)")
	fs.StringVar(&c.Timezone, "timezone", env("RENEWALS_TIMEZONE", "UTC"), "IANA zone in which dates and days left are reckoned, unless a subscription names its own (RENEWALS_TIMEZONE)")
	fs.StringVar(&c.Milestones, "milestones", env("RENEWALS_MILESTONES", "90,45,30"), "days before the end date at which notices are due (RENEWALS_MILESTONES)")
	fs.StringVar(&c.Schedule, "schedule", env("RENEWALS_SCHEDULE", "0 6 * * *"), "cron spec of the daily scheduler pass, in RENEWALS_TIMEZONE (RENEWALS_SCHEDULE)")
	fs.IntVar(&c.GraceDays, "grace-days", c.envInt(getenv, "RENEWALS_GRACE_DAYS", DefaultGraceDays), "days after the end date that a lapsed subscription stays on the call list (RENEWALS_GRACE_DAYS)")
	fs.StringVar(&c.PostExpiry, "post-expiry", env("RENEWALS_POST_EXPIRY", subscription.DefaultPostExpiry), "the vendor's stages after the end date, name:days-after-it, then cancelled (RENEWALS_POST_EXPIRY)")
	fs.StringVar(&c.RepsFile, "reps-file", env("RENEWALS_REPS_FILE", ""), "CSV of the reseller's reps (name,email) for each rep's morning call list; empty sends none (RENEWALS_REPS_FILE)")
	fs.StringVar(&c.LogFormat, "log-format", env("RENEWALS_LOG_FORMAT", "json"), "log format: json or console (RENEWALS_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("RENEWALS_LOG_LEVEL", "info"), "least severe log lines written: debug, info, warn or error (RENEWALS_LOG_LEVEL)")
	fs.DurationVar(&c.Drain, "drain", c.envDuration(getenv, "RENEWALS_DRAIN", DefaultDrain), "at shutdown, how long sends and requests under way may take to finish before they are cut off (RENEWALS_DRAIN)")
	fs.IntVar(&c.Workers, "workers", c.envInt(getenv, "RENEWALS_WORKERS", DefaultWorkers), "notices the notifier handles at once (RENEWALS_WORKERS)")
	fs.DurationVar(&c.AckWait, "ack-wait", c.envDuration(getenv, "RENEWALS_ACK_WAIT", DefaultAckWait), "how long a notice may go unacknowledged before it is redelivered; claims last 1.5 times this (RENEWALS_ACK_WAIT)")
	fs.Int64Var(&c.MaxImportBytes, "max-import-bytes", int64(c.envInt(getenv, "RENEWALS_MAX_IMPORT_BYTES", DefaultMaxImportBytes)), "largest import body the API accepts, in bytes (RENEWALS_MAX_IMPORT_BYTES)")
	fs.StringVar(&c.Targets, "target", env("RENEWALS_TARGET", "all"), "what this process runs: all, or a comma-separated list of "+strings.Join(Targets, ", ")+" (RENEWALS_TARGET)")
	fs.StringVar(&c.BounceDomain, "bounce-domain", env("RENEWALS_BOUNCE_DOMAIN", ""), "domain of the per-notice envelope sender bounce+<tag>@<domain>, where bounces return; empty: MAIL FROM is RENEWALS_MAIL_FROM (RENEWALS_BOUNCE_DOMAIN)")
	fs.StringVar(&c.BounceListen, "bounce-listen", env("RENEWALS_BOUNCE_LISTEN", ""), "where the bounces target's SMTP receiver listens, e.g. 0.0.0.0:2525; empty: no receiver (RENEWALS_BOUNCE_LISTEN)")
	fs.StringVar(&c.BounceSecret, "bounce-secret", env("RENEWALS_BOUNCE_SECRET", ""), "HMAC key of the bounce tags, the same on every replica; empty: generated into <data dir>/bounce-secret (RENEWALS_BOUNCE_SECRET)")
	fs.StringVar(&c.DKIMKeyFile, "dkim-key-file", env("RENEWALS_DKIM_KEY_FILE", ""), "PEM private key (RSA or Ed25519) that signs every notice with DKIM; empty: no signature (RENEWALS_DKIM_KEY_FILE)")
	fs.StringVar(&c.DKIMSelector, "dkim-selector", env("RENEWALS_DKIM_SELECTOR", ""), "DKIM selector: the public key is published at <selector>._domainkey.<From domain> (RENEWALS_DKIM_SELECTOR)")
	fs.StringVar(&c.ResellerName, "reseller-name", env("RENEWALS_RESELLER_NAME", ""), "reseller name shown in the emails and as their sender; the notifier needs it (RENEWALS_RESELLER_NAME)")
	fs.StringVar(&c.ResellerPhone, "reseller-phone", env("RENEWALS_RESELLER_PHONE", ""), "reseller phone shown in the emails (RENEWALS_RESELLER_PHONE)")
	fs.StringVar(&c.ResellerEmail, "reseller-email", env("RENEWALS_RESELLER_EMAIL", ""), "reseller email shown in the emails (RENEWALS_RESELLER_EMAIL)")
	fs.StringVar(&c.ResellerWebsite, "reseller-website", env("RENEWALS_RESELLER_WEBSITE", ""), "reseller website shown in the emails (RENEWALS_RESELLER_WEBSITE)")
	return c
}

// envInt reads a whole-number variable; a malformed one is kept for
// Validate to report.
func (c *Config) envInt(getenv func(string) string, name string, def int) int {
	v := getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && c.badEnv == nil {
		c.badEnv = fmt.Errorf("%s %q is not a whole number: give digits only, e.g. %d", name, v, def)
	}
	return n
}

// envDuration reads a duration variable; a malformed one is kept for
// Validate to report.
func (c *Config) envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	v := getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil && c.badEnv == nil {
		c.badEnv = fmt.Errorf("%s %q is not a duration: use e.g. %v", name, v, def)
	}
	return d
}

// parseSync reads RENEWALS_NATS_SYNC: "always" (or nothing) is 0, else a
// positive interval.
func parseSync(v string) (time.Duration, error) {
	if v == "" || strings.EqualFold(v, "always") {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("RENEWALS_NATS_SYNC %q: use always, or a positive interval such as 2m", v)
	}
	return d, nil
}

// CronParser parses RENEWALS_SCHEDULE: the standard five fields or a
// descriptor such as @daily.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate checks every setting and fills the derived fields. Its errors name
// the variable and say what to do.
func (c *Config) Validate() error {
	if c.badEnv != nil {
		return c.badEnv
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil || c.Timezone == "" || strings.EqualFold(c.Timezone, "local") {
		return fmt.Errorf("RENEWALS_TIMEZONE %q is not an IANA time zone: use a name such as Europe/London or UTC", c.Timezone)
	}
	c.Location = loc
	if c.Stages, err = subscription.ParseMilestones(c.Milestones); err != nil {
		return fmt.Errorf("RENEWALS_MILESTONES: %w", err)
	}
	if c.PostExpiryStages, err = subscription.ParsePostExpiry(c.PostExpiry); err != nil {
		return fmt.Errorf("RENEWALS_POST_EXPIRY: %w", err)
	}
	if c.RepsFile != "" {
		if _, err := os.Stat(c.RepsFile); err != nil {
			return fmt.Errorf("RENEWALS_REPS_FILE %q: %v; give the path of a readable CSV of name,email lines, or leave it empty for no morning lists", c.RepsFile, err)
		}
	}
	if _, err := CronParser.Parse(c.Schedule); err != nil {
		return fmt.Errorf("RENEWALS_SCHEDULE %q is not a cron spec (%v): use five fields, minute hour day month weekday, e.g. \"0 6 * * *\" for 06:00 daily", c.Schedule, err)
	}
	// The URLs are read again where they are used; checked here so that a
	// typo stops the start before anything has started.
	if c.SMTPURL != "" {
		if _, err := mailer.ParseURL(c.SMTPURL); err != nil {
			return err
		}
	}
	if strings.HasPrefix(c.RedisURL, redisstore.SentinelScheme+"://") {
		if _, err := redisstore.ParseSentinelURL(c.RedisURL); err != nil {
			return fmt.Errorf("RENEWALS_REDIS_URL is not a Redis Sentinel URL (%v): use e.g. redis-sentinel://:password@s1:26379,s2:26379,s3:26379/mymaster?db=0", err)
		}
	} else if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			return fmt.Errorf("RENEWALS_REDIS_URL is not a Redis URL (%v): use e.g. redis://host:6379/0, or redis-sentinel://s1:26379,s2:26379/mymaster for Sentinel", err)
		}
	}
	if c.Drain < 0 {
		return fmt.Errorf("RENEWALS_DRAIN must be a duration such as 10s or 1m")
	}
	if c.GraceDays < 0 {
		return fmt.Errorf("RENEWALS_GRACE_DAYS must be a whole number of days, 0 or more")
	}
	if c.Workers < 1 {
		return fmt.Errorf("RENEWALS_WORKERS is %d: the notifier needs 1 worker or more, e.g. %d", c.Workers, DefaultWorkers)
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Replicas < 1 || c.Replicas > MaxReplicas {
		return fmt.Errorf("RENEWALS_REPLICAS is %d: give 1 to %d, e.g. 3 on a NATS cluster of three servers", c.Replicas, MaxReplicas)
	}
	if c.Replicas > 1 && c.NATSURL == "" {
		return fmt.Errorf("RENEWALS_REPLICAS is %d, but the embedded NATS server is a single server: leave RENEWALS_REPLICAS at 1, or set RENEWALS_NATS_URL to the servers of a cluster", c.Replicas)
	}
	if c.AckWait < time.Second {
		return fmt.Errorf("RENEWALS_ACK_WAIT is %v: give 1s or more, e.g. %v", c.AckWait, DefaultAckWait)
	}
	if c.MaxImportBytes < 1 {
		return fmt.Errorf("RENEWALS_MAX_IMPORT_BYTES is %d: give a positive number of bytes, e.g. %d for 1 GiB", c.MaxImportBytes, DefaultMaxImportBytes)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("RENEWALS_HTTP_ADDR %q: use host:port, e.g. 127.0.0.1:8080", c.HTTPAddr)
	}
	if c.NATSCreds != "" {
		if c.NATSURL == "" {
			return fmt.Errorf("RENEWALS_NATS_CREDS is for an external NATS server: set RENEWALS_NATS_URL too (the embedded server generates its own passwords)")
		}
		f, err := os.Open(c.NATSCreds)
		if err != nil {
			return fmt.Errorf("RENEWALS_NATS_CREDS %q: %v; give the path of a readable .creds file", c.NATSCreds, err)
		}
		f.Close()
	}
	if c.NATSSyncInterval, err = parseSync(c.NATSSync); err != nil {
		return err
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		return fmt.Errorf("RENEWALS_LOG_FORMAT %q: use json or console", c.LogFormat)
	}
	if c.Level, err = zapcore.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("RENEWALS_LOG_LEVEL %q: use debug, info, warn or error", c.LogLevel)
	}
	if err := c.validateTargets(); err != nil {
		return err
	}
	if err := c.validateBounces(); err != nil {
		return err
	}
	if c.TargetSet["notifier"] && (strings.TrimSpace(c.ResellerName) == "" ||
		strings.TrimSpace(c.ResellerPhone+c.ResellerEmail+c.ResellerWebsite) == "") {
		return fmt.Errorf("the notifier needs the reseller's name and at least one contact for the emails: set RENEWALS_RESELLER_NAME and RENEWALS_RESELLER_PHONE, RENEWALS_RESELLER_EMAIL or RENEWALS_RESELLER_WEBSITE")
	}
	return nil
}

func (c *Config) validateTargets() error {
	c.TargetSet = map[string]bool{}
	for t := range strings.SplitSeq(c.Targets, ",") {
		t = strings.TrimSpace(t)
		switch {
		case t == "all":
			for _, x := range Targets {
				// The bounce receiver listens on a port of its own: only
				// when one is given.
				c.TargetSet[x] = x != "bounces" || c.BounceListen != ""
			}
		case slices.Contains(Targets, t):
			c.TargetSet[t] = true
		default:
			return fmt.Errorf("--target %q: use all, or a comma-separated list of %s", t, strings.Join(Targets, ", "))
		}
	}
	return nil
}

// validateBounces checks the bounce and DKIM settings.
func (c *Config) validateBounces() error {
	if c.BounceListen != "" {
		if _, _, err := net.SplitHostPort(c.BounceListen); err != nil {
			return fmt.Errorf("RENEWALS_BOUNCE_LISTEN %q: use host:port, e.g. 0.0.0.0:2525", c.BounceListen)
		}
	}
	if c.TargetSet["bounces"] && (c.BounceListen == "" || c.BounceDomain == "") {
		return fmt.Errorf("the bounces target needs RENEWALS_BOUNCE_LISTEN (where its SMTP receiver listens) and RENEWALS_BOUNCE_DOMAIN (the domain whose MX points at it)")
	}
	if c.BounceDomain != "" && (strings.ContainsAny(c.BounceDomain, "@ <>") || !strings.Contains(c.BounceDomain, ".") && c.BounceDomain != "localhost") {
		return fmt.Errorf("RENEWALS_BOUNCE_DOMAIN %q is not a domain: use e.g. bounces.reseller.example", c.BounceDomain)
	}
	if (c.DKIMKeyFile == "") != (c.DKIMSelector == "") {
		return fmt.Errorf("DKIM signing needs both RENEWALS_DKIM_KEY_FILE and RENEWALS_DKIM_SELECTOR: set both, or neither")
	}
	return nil
}
