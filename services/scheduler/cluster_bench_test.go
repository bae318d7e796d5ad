package scheduler_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/scheduler"
)

// BenchmarkCatchUpPassCluster is the catch-up pass of 100,000 due notices
// (RENEWALS_BENCH_CLUSTER_DUE to change it), stored in Redis, publishing into
// the RENEWALS stream on a single nats-server (R1) and on three clustered
// on loopback in this process, with one replica and with three (R3), in the
// same run. It reports the due events published per second of each pass.
func BenchmarkCatchUpPassCluster(b *testing.B) {
	due := 100_000
	if v := os.Getenv("RENEWALS_BENCH_CLUSTER_DUE"); v != "" {
		var err error
		if due, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	rd := testenv.StartRedis(b)
	store, ledger, err := redisstore.Open(ctx, rd.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	now := time.Date(2027, 6, 1, 6, 0, 0, 0, time.UTC)
	today := subscription.DateOf(now)
	subs := make([]subscription.Subscription, 0, benchLoad)
	for lo := 0; lo < due; lo += benchLoad {
		subs = subs[:0]
		for i := lo; i < min(lo+benchLoad, due); i++ {
			s := benchSub(i*benchDueOne, today) // every benchDueOne-th is due
			subs = append(subs, s)
		}
		if _, err := store.Upsert(ctx, subs); err != nil {
			b.Fatal(err)
		}
	}
	single := testenv.NATS(b)
	cluster := testenv.StartNATSCluster(b, 3)
	for _, tc := range []struct {
		name     string
		url      string
		replicas int
	}{
		{"single/R1", single.ClientURL(), 1},
		{"cluster/R1", cluster.URLs(), 1},
		{"cluster/R3", cluster.URLs(), 3},
	} {
		b.Run(tc.name, func(b *testing.B) {
			nc, err := nats.Connect(tc.url)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := natsbus.NewJetStream(nc)
			if err != nil {
				b.Fatal(err)
			}
			s := &scheduler.Scheduler{
				Store: store, Ledger: ledger, JS: js, Milestones: subscription.DefaultMilestones,
				Location: time.UTC, Now: func() time.Time { return now }, Log: zap.NewNop(),
			}
			var published int
			var took time.Duration
			for b.Loop() {
				b.StopTimer()
				if err := js.DeleteStream(ctx, event.StreamName); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
					b.Fatal(err)
				}
				if err := natsbus.EnsureStreamReplicas(ctx, js, tc.replicas); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				res, err := s.Pass(ctx, subscription.Date{}, false)
				took += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if res.Published != due {
					b.Fatalf("pass published %d of %d due, want %d", res.Published, res.Due, due)
				}
				published += res.Published
			}
			b.ReportMetric(float64(published)/took.Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
