package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"renewals/pkg/subscription"
)

// TestEndingBetweenStopsWhenCancelled: once ctx ends, EndingBetween returns
// its error after the chunk in hand, without yielding the chunk it read
// ahead.
func TestEndingBetweenStopsWhenCancelled(t *testing.T) {
	b := open(t)
	end := subscription.MustDate("2030-01-01")
	subs := make([]subscription.Subscription, 2500)
	for i := range subs {
		id := fmt.Sprintf("c%05d", i)
		subs[i] = subscription.Subscription{
			ID: id, EndDate: end.AddDays(i % 30), Status: subscription.StatusActive,
			ContractManager: subscription.Contact{Email: "cm." + id + "@example.com"},
		}
	}
	if _, err := b.Store.Upsert(context.Background(), subs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	err := b.Store.EndingBetween(ctx, end, end.AddDays(29), func(subscription.Subscription) error {
		seen++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("EndingBetween cancelled in fn: %v, want an error wrapping context.Canceled", err)
	}
	if seen < 1 || seen > 1000 {
		t.Errorf("fn saw %d subscriptions after the cancel at the first; want at most the first chunk, 1000", seen)
	}
}
