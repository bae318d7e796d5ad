package natsbus_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
)

// startServer starts a nats-server with JetStream on a free port with opts
// (its users or operator) and returns its client URL.
func startServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// open connects to an external server as serve does, with a deadline so that
// a connection that never gets in fails the test instead of hanging it.
func open(t *testing.T, cfg natsbus.Config) (*natsbus.Bus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bus, err := natsbus.Open(ctx, cfg)
	if err == nil {
		t.Cleanup(bus.Close)
	}
	return bus, err
}

func checkStream(t *testing.T, bus *natsbus.Bus) {
	t.Helper()
	if _, err := bus.JS.Stream(context.Background(), event.StreamName); err != nil {
		t.Errorf("stream %s: %v", event.StreamName, err)
	}
}

// TestExternalServerWithPassword: a user and password in RENEWALS_NATS_URL
// get in; a wrong one stops Open with a sentence about the credentials.
func TestExternalServerWithPassword(t *testing.T) {
	addr := startServer(t, &server.Options{Users: []*server.User{{Username: "svc", Password: "s3cret"}}})
	u, _ := url.Parse(addr)
	u.User = url.UserPassword("svc", "s3cret")
	bus, err := open(t, natsbus.Config{URL: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	checkStream(t, bus)

	u.User = url.UserPassword("svc", "wrong")
	if _, err := open(t, natsbus.Config{URL: u.String()}); err == nil || !strings.Contains(err.Error(), "refused the credentials") {
		t.Errorf("open with a wrong password: %v, want it to say the credentials were refused", err)
	}
}

// TestExternalServerWithCredsFile: against a server in operator (JWT) mode,
// RENEWALS_NATS_CREDS's file gets in, and without it Open says the
// credentials were refused.
func TestExternalServerWithCredsFile(t *testing.T) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	must(err)
	oc, err = jwt.DecodeOperatorClaims(ojwt)
	must(err)

	akp, err := nkeys.CreateAccount()
	must(err)
	apub, err := akp.PublicKey()
	must(err)
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	must(err)

	ukp, err := nkeys.CreateUser()
	must(err)
	upub, err := ukp.PublicKey()
	must(err)
	uc := jwt.NewUserClaims(upub)
	ujwt, err := uc.Encode(akp)
	must(err)
	seed, err := ukp.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	must(err)
	credsFile := filepath.Join(t.TempDir(), "renewals.creds")
	must(os.WriteFile(credsFile, creds, 0o600))

	// JetStream in operator mode needs a system account.
	skp, err := nkeys.CreateAccount()
	must(err)
	spub, err := skp.PublicKey()
	must(err)
	sjwt, err := jwt.NewAccountClaims(spub).Encode(okp)
	must(err)

	resolver := &server.MemAccResolver{}
	must(resolver.Store(apub, ajwt))
	must(resolver.Store(spub, sjwt))
	addr := startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: spub})

	bus, err := open(t, natsbus.Config{URL: addr, Creds: credsFile})
	if err != nil {
		t.Fatal(err)
	}
	checkStream(t, bus)

	if _, err := open(t, natsbus.Config{URL: addr}); err == nil || !strings.Contains(err.Error(), "refused the credentials") {
		t.Errorf("open without the creds file: %v, want it to say the credentials were refused", err)
	}
}
