package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

func benchSubs(n, from int) []subscription.Subscription {
	end := subscription.MustDate("2027-01-01")
	out := make([]subscription.Subscription, n)
	for i := range out {
		id := fmt.Sprintf("11%010d", from+i)
		out[i] = subscription.Subscription{
			ID: id, EndDate: end.AddDays(i % 365), CustomerAccount: "ACC" + id, CustomerName: "Customer " + id,
			Product: "Suite Pro", Status: subscription.StatusActive, Term: "P1Y", Locale: "en-GB",
			ContractManager: subscription.Contact{Name: "CM " + id, Email: "cm" + id + "@example.com", Phone: "+44 20 7946 0000"},
			PrimaryAdmin:    subscription.Contact{Name: "PA " + id, Email: "pa" + id + "@example.com"},
		}
	}
	return out
}

// BenchmarkUpsert imports new subscriptions in batches of 1,000 rows.
func BenchmarkUpsert(b *testing.B) {
	s, _, err := redisstore.Open(context.Background(), testenv.StartRedis(b).URL)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const batch = 1000
	ctx := context.Background()
	rows := 0
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		subs := benchSubs(batch, i*batch)
		b.StartTimer()
		if _, err := s.Upsert(ctx, subs); err != nil {
			b.Fatal(err)
		}
		rows += batch
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkClaimConfirm claims and confirms one notice per iteration.
func BenchmarkClaimConfirm(b *testing.B) {
	_, l, err := redisstore.Open(context.Background(), testenv.StartRedis(b).URL)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	now := time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)
	n := 0
	for b.Loop() {
		k := subscription.NoticeKey{SubscriptionID: fmt.Sprintf("s%d", n), EndDate: subscription.MustDate("2027-03-31"), Milestone: 90}
		if err := l.Claim(ctx, k, "tok", now, time.Minute); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Confirm(ctx, k, "tok", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: now}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "notices/s")
}
