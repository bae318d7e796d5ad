package shred

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"testing"

	"renewals/pkg/subscription"
)

// The compact form holds the same record as the JSON form: the digest, end,
// clear part and sealed part that SealSubscription makes, and it opens to
// the same subscription.
func TestCompactRecordMatchesJSONForm(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range encodeCases() {
		b, err := AppendCompactRecord([]byte("prefix"), key, &s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("AppendCompactRecord lost dst: %q", b)
		}
		b = b[len("prefix"):]
		r, err := UnmarshalRecord(b)
		if err != nil {
			t.Fatalf("%v: %q", err, b)
		}
		ref, err := SealSubscription(key, s)
		if err != nil {
			t.Fatal(err)
		}
		if !SameData(r, ref) || r.End != ref.End || len(r.Sealed) != len(ref.Sealed) {
			t.Errorf("compact record %+v differs from SealSubscription's %+v", r, ref)
		}
		if got := hex.EncodeToString(b[1:33]); got != r.Digest {
			t.Errorf("digest at 1:33 is %s, want %s", got, r.Digest)
		}
		if got := int64(binary.BigEndian.Uint64(b[33:41])); got != s.EndDate.Ordinal() {
			t.Errorf("end at 33:41 is %d, want %d", got, s.EndDate.Ordinal())
		}
		j, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= len(j) {
			t.Errorf("compact form has %d bytes, the JSON form %d", len(b), len(j))
		}
		var back subscription.Subscription
		if jb, _ := json.Marshal(s); json.Unmarshal(jb, &back) != nil {
			continue // a date out of range does not read back
		}
		got, err := OpenSubscription(key, r)
		if err != nil {
			t.Fatal(err)
		}
		if !subscription.Equal(got, back) {
			t.Errorf("opened %+v, want %+v", got, back)
		}
	}
}

// UnmarshalRecord never panics on a record that starts like a compact one,
// and what it accepts is exactly its input again.
func FuzzUnmarshalCompactRecord(f *testing.F) {
	key := bytes.Repeat([]byte{7}, KeySize)
	for _, s := range encodeCases()[:3] {
		b, err := AppendCompactRecord(nil, key, &s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{CompactVersion})
	f.Add(append([]byte{CompactVersion}, make([]byte, CompactHeaderLen)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		b[0] = CompactVersion
		r, err := UnmarshalRecord(b)
		if err != nil {
			return
		}
		d, err := hex.DecodeString(r.Digest)
		if err != nil {
			t.Fatal(err)
		}
		again := append([]byte{CompactVersion}, d...)
		again = binary.BigEndian.AppendUint64(again, uint64(r.End))
		again = binary.BigEndian.AppendUint32(again, uint32(len(r.Clear)))
		again = append(append(again, r.Clear...), r.Sealed...)
		if !bytes.Equal(again, b) {
			t.Errorf("read %q as %+v", b, r)
		}
	})
}
