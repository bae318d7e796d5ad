package e2e_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"renewals/pkg/redisstore"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// sentinelNoticesEnv sets how many notices TestRedisSentinelFailover sends:
// 5,000 by default (about 16 s on two shared cores); fewer, e.g.
// RENEWALS_SENTINEL_NOTICES=1000, for a quicker run while working on it.
const sentinelNoticesEnv = "RENEWALS_SENTINEL_NOTICES"

// TestRedisSentinelFailover: subscriptions and the ledger in Redis behind
// three Sentinels (RENEWALS_REDIS_URL=redis-sentinel://...), two notifier
// processes of four workers each. Mid-batch the primary is killed
// (SIGKILL); the sentinels promote the replica and the clients follow. No
// notice is missed; a notice received twice is flagged ambiguous in the
// ledger, and there are at most as many as were in flight (the workers'),
// since the ledger waits for the replica (WAIT 1) before a confirm counts.
func TestRedisSentinelFailover(t *testing.T) {
	n := 5000
	if v := os.Getenv(sentinelNoticesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("%s=%q: %v", sentinelNoticesEnv, v, err)
		}
	}
	const notifiers, workers = 2, 4
	rs := testenv.StartRedisSentinel(t)
	natsURL := testenv.NATS(t).ClientURL()
	r := &faultRig{natsURL: natsURL, redis: rs.Primary, smtp: testenv.SMTP(t)}
	var err error
	if _, r.ledger, err = redisstore.Open(context.Background(), rs.URL()); err != nil {
		t.Fatal(err)
	}
	r.api = e2e.Start(t, e2e.Options{
		Env:  map[string]string{"RENEWALS_NATS_URL": natsURL, "RENEWALS_REDIS_URL": rs.URL()},
		Args: []string{"--target", "api"},
	})
	keys := r.importSubs(t, n)
	for range notifiers {
		r.startNotifier(t, map[string]string{"RENEWALS_REDIS_URL": rs.URL(), "RENEWALS_WORKERS": strconv.Itoa(workers)})
	}
	r.pass(t)
	r.smtp.WaitFor(n/5, 60*time.Second)
	at := len(r.smtp.Messages())
	rs.Primary.Stop()
	t.Logf("primary %s killed after %d of %d emails", rs.Primary.Addr, at, n)
	testenv.Eventually(t, 30*time.Second, "the sentinels to promote the replica", func() bool {
		return rs.Master(t) == rs.Replica.Addr
	})
	r.waitSent(t, 90*time.Second, keys)
	dups := r.check(t, keys)
	t.Logf("%d notices, %d emails, %d received twice (each flagged ambiguous): %v", n, len(r.smtp.Messages()), len(dups), dups)
	if len(dups) > notifiers*workers {
		t.Errorf("%d notices received twice, more than the %d in flight", len(dups), notifiers*workers)
	}
	if at >= n {
		t.Errorf("the primary was killed after the batch (%d of %d sent): not mid-batch", at, n)
	}
}
