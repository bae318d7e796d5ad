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

// BenchmarkOpenSubscription measures what reading a stored record costs the
// notifier per notice: decoding the clear part, opening and decoding the
// personal part.
func BenchmarkOpenSubscription(b *testing.B) {
	key, r := sealedSample(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := shred.OpenSubscription(key, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenRecord measures what reading a subscription from its stored
// bytes costs the Redis store per notice: OpenRecord, the record and its
// clear part in one pass, then the personal part.
func BenchmarkOpenRecord(b *testing.B) {
	key, raw := storedSample(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := shred.OpenRecord(key, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalOpen is BenchmarkOpenRecord the way the embedded store
// reads: UnmarshalRecord, then OpenSubscription.
func BenchmarkUnmarshalOpen(b *testing.B) {
	key, raw := storedSample(b)
	b.ReportAllocs()
	for b.Loop() {
		r, err := shred.UnmarshalRecord(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := shred.OpenSubscription(key, r); err != nil {
			b.Fatal(err)
		}
	}
}

// sealedSample is a data key and a sample subscription with every clear
// field set, sealed under it.
func sealedSample(b *testing.B) ([]byte, shred.Record) {
	b.Helper()
	key, _ := shred.NewKey()
	s := sample()
	s.CustomerAccount, s.CustomerName, s.Term = "ACC-1", "Analytical Engines Ltd", "12 months"
	s.Timezone, s.Locale = "Europe/London", "en-GB"
	r, err := shred.SealSubscription(key, s)
	if err != nil {
		b.Fatal(err)
	}
	return key, r
}

// storedSample is sealedSample's key and its record's stored bytes.
func storedSample(b *testing.B) ([]byte, []byte) {
	b.Helper()
	key, r := sealedSample(b)
	raw, err := r.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return key, raw
}
