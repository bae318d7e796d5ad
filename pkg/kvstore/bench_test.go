package kvstore_test

import (
	"context"
	"testing"

	"renewals/pkg/kvstore"
	"renewals/pkg/storetest"
)

// BenchmarkUpsert imports new subscriptions in batches of 1,000 rows.
func BenchmarkUpsert(b *testing.B) {
	js, _ := connect(b)
	s, _, err := kvstore.New(context.Background(), js)
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchUpsert(b, s)
}

// BenchmarkClaimConfirm claims and confirms one notice per iteration.
func BenchmarkClaimConfirm(b *testing.B) {
	js, _ := connect(b)
	_, l, err := kvstore.New(context.Background(), js)
	if err != nil {
		b.Fatal(err)
	}
	storetest.BenchClaimConfirm(b, l)
}
