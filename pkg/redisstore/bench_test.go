package redisstore_test

import (
	"context"
	"testing"

	"renewals/pkg/redisstore"
	"renewals/pkg/storetest"
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
