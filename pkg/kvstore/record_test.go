package kvstore

import (
	"bytes"
	"encoding/json"
	"testing"

	"renewals/pkg/shred"
	"renewals/pkg/storetest"
)

// benchRecord is a stored record as an import of storetest.BenchSubs
// writes it.
func benchRecord(tb testing.TB) []byte {
	tb.Helper()
	key, err := shred.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	r, err := shred.SealSubscription(key, storetest.BenchSubs(1, 0)[0])
	if err != nil {
		tb.Fatal(err)
	}
	b, err := stored{Record: r, KeySeq: 123456789}.marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// The decoders read back what marshal wrote, the older layouts included,
// and encoding/json reads the same.
func TestUnmarshalStored(t *testing.T) {
	b := benchRecord(t)
	var want stored
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalStored(b)
	if err != nil || got.Digest != want.Digest || got.End != want.End || !bytes.Equal(got.Clear, want.Clear) || !bytes.Equal(got.Sealed, want.Sealed) || got.KeySeq != want.KeySeq || len(got.Sealed) == 0 {
		t.Errorf("unmarshalStored = %+v, %v; want %+v", got, err, want)
	}
	fp, err := unmarshalFingerprint(b)
	if err != nil || fp.Digest != want.Digest || fp.End != want.End || !bytes.Equal(fp.Clear, want.Clear) || fp.Sealed != nil || fp.KeySeq != want.KeySeq {
		t.Errorf("unmarshalFingerprint = %+v, %v; want %+v without the sealed part", fp, err, want)
	}
	old, err := want.Record.Marshal() // a record of the versions before data key sequences
	if err != nil {
		t.Fatal(err)
	}
	if got, err := unmarshalStored(old); err != nil || got.Digest != want.Digest || !bytes.Equal(got.Sealed, want.Sealed) || got.KeySeq != 0 {
		t.Errorf("unmarshalStored of the earlier layout = %+v, %v", got, err)
	}
	for _, bad := range []string{`{"d":"x",`, `{"d":1}`, `[]`} {
		if _, err := unmarshalStored([]byte(bad)); err == nil {
			t.Errorf("unmarshalStored(%s) succeeded", bad)
		}
	}
}

// BenchmarkDecodeRecord compares the decoders of a stored record: the
// whole record and its fingerprint (without the sealed part), with
// go-json-experiment/json, as the store decodes, and with encoding/json.
func BenchmarkDecodeRecord(b *testing.B) {
	rec := benchRecord(b)
	b.Run("stored/v2", func(b *testing.B) {
		for b.Loop() {
			if _, err := unmarshalStored(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stored/v1", func(b *testing.B) {
		for b.Loop() {
			var r stored
			if err := json.Unmarshal(rec, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fingerprint/v2", func(b *testing.B) {
		for b.Loop() {
			if _, err := unmarshalFingerprint(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fingerprint/v1", func(b *testing.B) {
		for b.Loop() {
			var r struct {
				Digest string          `json:"d"`
				End    int64           `json:"e"`
				Clear  json.RawMessage `json:"s"`
				KeySeq uint64          `json:"k"`
			}
			if err := json.Unmarshal(rec, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
