package shred_test

import (
	"testing"

	"renewals/pkg/shred"
)

// BenchmarkSealSubscription measures the CPU that sealing costs an import per row.
func BenchmarkSealSubscription(b *testing.B) {
	key, _ := shred.NewKey()
	s := sample()
	for b.Loop() {
		r, err := shred.SealSubscription(key, s)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}
