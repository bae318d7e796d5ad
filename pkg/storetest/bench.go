package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

// BenchSubs returns n distinct subscriptions, ids counting from from, with
// every personal field filled, ending over a year from 2027-01-01.
func BenchSubs(n, from int) []subscription.Subscription {
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

// BenchUpsert imports new subscriptions into s in batches of 1,000 rows and
// reports rows/s. Every store's BenchmarkUpsert runs it.
func BenchUpsert(b *testing.B, s subscription.Store) {
	const batch = 1000
	ctx := context.Background()
	rows := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		subs := BenchSubs(batch, i*batch)
		b.StartTimer()
		if _, err := s.Upsert(ctx, subs); err != nil {
			b.Fatal(err)
		}
		rows += batch
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchClaimConfirm claims, begins and confirms one notice per iteration on
// l, as the notifier does for each email, and reports notices/s. Every
// store's BenchmarkClaimConfirm runs it.
func BenchClaimConfirm(b *testing.B, l subscription.Ledger) {
	ctx := context.Background()
	now := time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)
	n := 0
	for b.Loop() {
		k := subscription.NoticeKey{SubscriptionID: fmt.Sprintf("s%d", n), EndDate: subscription.MustDate("2027-03-31"), Milestone: 90}
		if err := l.Claim(ctx, k, "tok", now, time.Minute); err != nil {
			b.Fatal(err)
		}
		if err := l.Begin(ctx, k, "tok", now, time.Minute); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Confirm(ctx, k, "tok", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: now}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "notices/s")
}
