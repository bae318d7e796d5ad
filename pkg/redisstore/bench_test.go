package redisstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"renewals/pkg/redisstore"
	"renewals/pkg/storetest"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// BenchmarkUpsert imports new subscriptions in batches of 1,000 rows.
func BenchmarkUpsert(b *testing.B) {
	s, _, err := redisstore.Open(context.Background(), testenv.StartRedis(b).URL)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchUpsert(b, s)
}

// BenchmarkClaimConfirm claims and confirms one notice per iteration.
func BenchmarkClaimConfirm(b *testing.B) {
	s, l, err := redisstore.Open(context.Background(), testenv.StartRedis(b).URL)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchClaimConfirm(b, l)
}

// BenchmarkNoticeProtocolParallel runs the ledger and store calls the
// notifier makes per notice (claim, read the subscription, confirm) from 64
// goroutines at once, as its workers do, and reports notices/s and the CPU
// redis-server spends a notice.
func BenchmarkNoticeProtocolParallel(b *testing.B) {
	ctx := context.Background()
	srv := testenv.StartRedis(b)
	s, l, err := redisstore.Open(ctx, srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	subs := storetest.BenchSubs(10_000, 0)
	for i := 0; i < len(subs); i += 1000 {
		if _, err := s.Upsert(ctx, subs[i:i+1000]); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)
	var next atomic.Int64
	cpu0 := testenv.ProcessCPU(srv.Pid())
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			sub := subs[i%int64(len(subs))]
			k := subscription.NoticeKey{SubscriptionID: sub.ID, EndDate: sub.EndDate, Milestone: 90 + int(i/int64(len(subs)))}
			if err := l.Claim(ctx, k, "tok", now, time.Minute); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Get(ctx, sub.ID); err != nil {
				b.Error(err)
				return
			}
			if _, err := l.Confirm(ctx, k, "tok", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: now}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu := testenv.ProcessCPU(srv.Pid()) - cpu0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notices/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "redis-cpu-µs/notice")
}
