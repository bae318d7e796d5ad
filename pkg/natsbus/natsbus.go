// Package natsbus connects renewals to NATS JetStream: it starts the embedded
// server, which admits only its own users, when no external one is
// configured, declares the RENEWALS stream and publishes events into it.
package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/event"
)

// DuplicateWindow is how long JetStream drops a repeated Nats-Msg-Id. It
// absorbs replicas and re-runs within minutes of each other cheaply; beyond it
// the ledger decides. Fifteen minutes covers a slow catch-up pass of a million
// subscriptions while keeping the id table small.
const DuplicateWindow = 15 * time.Minute

// MaxAge is how long events stay in the RENEWALS stream for replay by
// dashboards and for rebuilding the call list.
const MaxAge = 400 * 24 * time.Hour

// Config says which NATS to use.
type Config struct {
	// URL of an external NATS server, or comma-separated URLs of the
	// servers of a cluster; empty starts the embedded one.
	URL string
	// Replicas of the RENEWALS stream on a cluster; 0 means 1.
	Replicas int
	// Listen is where the embedded server listens (host:port).
	Listen string
	// StoreDir is the embedded server's JetStream storage directory.
	StoreDir string
	// Name is the client connection name, seen in server monitoring.
	Name string
	// Creds is a credentials file (user JWT and seed) for the external
	// server; empty connects with the user and password in URL, if any.
	Creds string
	// SecretsDir is where the embedded server's passwords are kept
	// (LoadCredentials); empty means StoreDir.
	SecretsDir string
	// SyncInterval is how often the embedded server's JetStream file store
	// fsyncs; 0 syncs every write before it is acknowledged.
	SyncInterval time.Duration
}

// Bus is a connection to NATS with JetStream, and the embedded server when
// one was started.
type Bus struct {
	Conn   *nats.Conn
	JS     jetstream.JetStream
	Server *server.Server // nil when external
	// Credentials of the embedded server's users; zero when external.
	Credentials Credentials
}

// Open connects to the configured NATS, starting the embedded server first
// when cfg.URL is empty, and makes sure the RENEWALS stream exists.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	b := &Bus{}
	opts := []nats.Option{
		nats.Name(cmpOr(cfg.Name, "renewals")),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.CustomInboxPrefix(InboxPrefix),
	}
	url := cfg.URL
	if url == "" {
		creds, err := LoadCredentials(cmpOr(cfg.SecretsDir, cfg.StoreDir))
		if err != nil {
			return nil, err
		}
		s, err := StartEmbedded(cfg, creds)
		if err != nil {
			return nil, err
		}
		b.Server, b.Credentials = s, creds
		url = s.ClientURL()
		opts = append(opts, nats.InProcessServer(s), nats.UserInfo(ServiceUser, creds.Service))
	} else if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", redact(url), err)
	}
	b.Conn = nc
	if nc.IsConnected() {
		if err := checkVersion(nc); err != nil {
			b.Close()
			return nil, err
		}
	}
	js, err := NewJetStream(nc)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.JS = js
	if err := EnsureStreamReplicas(ctx, js, cfg.Replicas); err != nil {
		last := nc.LastError()
		b.Close()
		if isAuthError(last) {
			return nil, fmt.Errorf("NATS refused the credentials (%v): check RENEWALS_NATS_CREDS, or the user and password in RENEWALS_NATS_URL", last)
		}
		return nil, err
	}
	if err := checkVersion(nc); err != nil { // connected only now, after a retry
		b.Close()
		return nil, err
	}
	return b, nil
}

// MinServerVersion is the oldest nats-server the service runs on: consumers
// with several filter subjects (the call list's) came with 2.10.
const MinServerVersion = "2.10"

// checkVersion refuses a server older than MinServerVersion in one sentence.
func checkVersion(nc *nats.Conn) error {
	v := nc.ConnectedServerVersion()
	major, minor, ok := majorMinor(v)
	if !ok {
		return nil // a version we cannot read: let the server answer for itself
	}
	if major < 2 || major == 2 && minor < 10 {
		return fmt.Errorf("the NATS server at %s is version %s; renewals needs %s or newer (for consumers with several filter subjects): upgrade it, or leave RENEWALS_NATS_URL empty to use the embedded server",
			redact(nc.ConnectedUrl()), v, MinServerVersion)
	}
	return nil
}

// ServerAtLeast reports whether the server nc is connected to is version
// major.minor or newer.
func ServerAtLeast(nc *nats.Conn, major, minor int) bool {
	ma, mi, ok := majorMinor(nc.ConnectedServerVersion())
	return ok && (ma > major || ma == major && mi >= minor)
}

// majorMinor reads "2.9.10" (or "v2.10.0-beta") as 2, 9.
func majorMinor(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.SplitN(parts[1], "-", 2)[0])
	return major, minor, err1 == nil && err2 == nil
}

// redact hides the passwords of the comma-separated NATS URLs in s, for
// messages and logs.
func redact(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := neturl.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// StartEmbedded starts an in-process nats-server with JetStream, listening on
// cfg.Listen (host:port) and storing under cfg.StoreDir, that admits only
// the users in creds. JetStream syncs every write to disk before it
// acknowledges it unless cfg.SyncInterval says otherwise: a "sent" confirmed
// in the ledger must survive a power loss, or the notice goes twice.
func StartEmbedded(cfg Config, creds Credentials) (*server.Server, error) {
	listen := cfg.Listen
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: use host:port, e.g. 127.0.0.1:4223", listen)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS listen address %q: port is not a number", listen)
	}
	if creds.Service == "" || creds.Dashboard == "" {
		return nil, errors.New("embedded NATS: no credentials: use LoadCredentials")
	}
	if port > 0 {
		// Fail at once on a taken port, rather than after waiting for a
		// server that cannot listen.
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("the embedded NATS server cannot listen on %s (%v): is another renewals or a NATS server running there? set RENEWALS_NATS_LISTEN to a free host:port", listen, err)
		}
		_ = l.Close()
	}
	opts := &server.Options{
		ServerName:   "renewals-embedded",
		Host:         host,
		Port:         port,
		JetStream:    true,
		StoreDir:     filepath.Join(cfg.StoreDir),
		SyncAlways:   cfg.SyncInterval == 0, // as nats.conf's `sync_interval: always`
		SyncInterval: cfg.SyncInterval,      // 0: nats-server's default, unused under SyncAlways
		Users:        creds.users(),
		NoSigs:       true,
		NoLog:        true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start listening on %s within 15s: is the port taken? set RENEWALS_NATS_LISTEN", listen)
	}
	return s, nil
}

// MaxPendingPublishes bounds the asynchronous publishes in flight on one
// JetStream handle, so a catch-up pass cannot outrun the server's acks.
const MaxPendingPublishes = 4096

// PublishAckWait bounds the wait for the acknowledgement of an
// asynchronous publish: a publish whose server stopped before answering
// (a cluster's stream leader, say) fails after it instead of holding its
// caller for good; the caller tries again, and the stream's duplicate
// window or the ledger's compare-and-set makes a repeat safe.
const PublishAckWait = 10 * time.Second

// NewJetStream returns a JetStream handle of its own on nc: asynchronous
// publishes are awaited per handle, so each publisher that waits for its
// own acknowledgements needs one.
func NewJetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(MaxPendingPublishes), jetstream.WithPublishAsyncTimeout(PublishAckWait))
	if err != nil {
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	return js, nil
}

// EnsureStream creates or updates the RENEWALS stream with one replica.
func EnsureStream(ctx context.Context, js jetstream.JetStream) error {
	return EnsureStreamReplicas(ctx, js, 1)
}

// EnsureStreamReplicas creates or updates the RENEWALS stream with replicas
// copies (0 means 1): 3 on a cluster of three keeps every notice through the
// loss of one server.
func EnsureStreamReplicas(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        event.StreamName,
		Description: "renewals: notices due and their outcomes, subscription changes, call list updates",
		Subjects:    event.StreamSubjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      MaxAge,
		Duplicates:  DuplicateWindow,
		Discard:     jetstream.DiscardOld,
		Replicas:    max(replicas, 1),
		// An import's upserted events go in atomic batches, one disk sync
		// each (see PublishAtomic), where the server has them.
		AllowAtomicPublish: Batchable(js.Conn()),
	})
	if err != nil {
		return fmt.Errorf("declare stream %s: %w", event.StreamName, err)
	}
	return nil
}

// Close drains the connection and stops the embedded server, if any.
func (b *Bus) Close() {
	if b.Conn != nil {
		_ = b.Conn.Drain()
		for b.Conn.IsDraining() {
			time.Sleep(5 * time.Millisecond)
		}
		b.Conn.Close()
	}
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
}

// Publish publishes ev on subject into the stream and waits for the stream's
// acknowledgement. A non-empty msgID is sent as Nats-Msg-Id, so the stream
// drops a repeat inside its duplicate window; the returned ack says whether
// it did.
func Publish(ctx context.Context, js jetstream.JetStream, subject string, ev event.Event, msgID string) (*jetstream.PubAck, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	ack, err := js.Publish(ctx, subject, data, msgOpts(msgID)...)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", subject, err)
	}
	return ack, nil
}

// msgOpts sends msgID as Nats-Msg-Id when set.
func msgOpts(msgID string) []jetstream.PublishOpt {
	if msgID == "" {
		return nil
	}
	return []jetstream.PublishOpt{jetstream.WithMsgID(msgID)}
}

// EmitAsync builds the event of data, as event.New does, and publishes it
// on natsSubject, with the CloudEvents subject ceSubject and msgID as
// Publish sends it, without waiting: the future tells when JetStream stored
// the event (or refused it), so that many events are on the wire at once
// and their acknowledgements come back together. The event is encoded once
// (event.Encode), data in place.
func EmitAsync(js jetstream.JetStream, natsSubject, ceSubject string, at time.Time, data any, msgID string) (jetstream.PubAckFuture, error) {
	b, err := event.Encode(natsSubject, ceSubject, at, data)
	if err != nil {
		return nil, err
	}
	f, err := js.PublishAsync(natsSubject, b, msgOpts(msgID)...)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", natsSubject, err)
	}
	return f, nil
}

// Emit builds an event from data and publishes it on natsSubject, with the
// CloudEvents subject ceSubject.
func Emit(ctx context.Context, js jetstream.JetStream, natsSubject, ceSubject string, at time.Time, data any) error {
	b, err := event.Encode(natsSubject, ceSubject, at, data)
	if err != nil {
		return err
	}
	if _, err := js.Publish(ctx, natsSubject, b); err != nil {
		return fmt.Errorf("publish %s: %w", natsSubject, err)
	}
	return nil
}

// IsUnavailable reports whether err means JetStream could not be reached now
// (a transient condition worth retrying).
func IsUnavailable(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoResponders)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
