package kvstore_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/kvstore"
	"renewals/pkg/subscription"
)

// seal makes a bucket's stream refuse writes while it still serves reads.
func seal(t *testing.T, js jetstream.JetStream, bucket string) {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Sealed = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("seal %s: %v", bucket, err)
	}
}

// Ping is a write: a bucket that reads but takes no writes fails it, the
// store's and the ledger's each on its own.
func TestPingNeedsAWrite(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	s, l, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	x := subscription.Subscription{ID: "110000000001", EndDate: subscription.MustDate("2027-05-31"), Status: subscription.StatusActive}
	if _, err := s.Upsert(ctx, []subscription.Subscription{x}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("store Ping: %v", err)
	}
	if err := l.Ping(ctx); err != nil {
		t.Fatalf("ledger Ping: %v", err)
	}

	seal(t, js, kvstore.SubscriptionsBucket)
	if err := s.Ping(ctx); err == nil {
		t.Error("store Ping succeeded on a sealed subscriptions bucket")
	}
	if _, err := s.Get(ctx, x.ID); err != nil {
		t.Errorf("Get on the sealed bucket: %v (reads must still work for the test to mean anything)", err)
	}
	if err := l.Ping(ctx); err != nil {
		t.Errorf("ledger Ping with only the subscriptions bucket sealed: %v", err)
	}

	seal(t, js, kvstore.LedgerBucket)
	if err := l.Ping(ctx); err == nil {
		t.Error("ledger Ping succeeded on a sealed ledger bucket")
	}
	if _, err := l.List(ctx, x.ID); err != nil {
		t.Errorf("List on the sealed ledger: %v", err)
	}
}
