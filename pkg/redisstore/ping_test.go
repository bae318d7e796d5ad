package redisstore_test

import (
	"context"
	"testing"

	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// Ping is a write: a Redis that answers reads but refuses writes (here a
// primary short of its min-replicas-to-write) fails it, and passes again
// once it takes writes.
func TestPingNeedsAWrite(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s, l, err := redisstore.Open(ctx, r.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := r.Client(t)
	x := subscription.Subscription{ID: "110000000001", EndDate: subscription.MustDate("2027-05-31"), Status: subscription.StatusActive}
	if _, err := s.Upsert(ctx, []subscription.Subscription{x}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("store Ping: %v", err)
	}
	if ttl := c.TTL(ctx, redisstore.Prefix+"health").Val(); ttl <= 0 {
		t.Errorf("the health key's TTL is %v: it must expire", ttl)
	}

	if err := c.ConfigSet(ctx, "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("store Ping succeeded while Redis refuses writes")
	}
	if err := l.Ping(ctx); err == nil {
		t.Error("ledger Ping succeeded while Redis refuses writes")
	}
	if _, err := s.Get(ctx, x.ID); err != nil {
		t.Errorf("Get while Redis refuses writes: %v (reads must still work for the test to mean anything)", err)
	}

	if err := c.ConfigSet(ctx, "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("store Ping once Redis takes writes again: %v", err)
	}
	if err := l.Ping(ctx); err != nil {
		t.Errorf("ledger Ping once Redis takes writes again: %v", err)
	}
}
