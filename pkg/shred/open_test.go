package shred

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"renewals/pkg/subscription"
)

// openV1 is how records were opened with encoding/json: the whole record,
// then its clear part, then its personal part.
func openV1(key, b []byte) (subscription.Subscription, error) {
	var r Record
	if len(b) > 0 && b[0] == compactVersion {
		var err error
		if r, err = unmarshalCompact(b); err != nil {
			return subscription.Subscription{}, err
		}
	} else if err := json.Unmarshal(b, &r); err != nil {
		return subscription.Subscription{}, err
	}
	var s subscription.Subscription
	if err := json.Unmarshal(r.Clear, &s); err != nil {
		return s, err
	}
	pj, err := Open(key, r.Sealed, []byte(s.ID))
	if err != nil {
		return s, err
	}
	var p personal
	if err := json.Unmarshal(pj, &p); err != nil {
		return s, err
	}
	s.ContractManager, s.PrimaryAdmin, s.SecondaryAdmins = p.CM, p.PA, p.SA
	return s, nil
}

// OpenRecord, and UnmarshalRecord with OpenSubscription, read every record
// Marshal writes, and the records of earlier builds, to what encoding/json
// read from them, field for field (nil and empty slices alike).
func TestOpenRecordReadsAsEncodingJSON(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	var records [][]byte
	keys := map[int][]byte{}
	cases := encodeCases()
	// The odd strings once more, with dates that are dates and an id that
	// is valid UTF-8, so that the whole record opens.
	odd := cases[3]
	odd.ID, odd.EndDate, odd.StartDate = "4", subscription.MustDate("2027-03-31"), subscription.MustDate("2026-04-01")
	for _, s := range append(cases, odd) {
		r, err := SealSubscription(key, s)
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, b)
	}
	fkey, _ := fixture()
	for _, name := range []string{"json.record", "compact.record"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		keys[len(records)] = fkey
		records = append(records, b)
	}
	opened := 0
	for i, b := range records {
		k := key
		if keys[i] != nil {
			k = keys[i]
		}
		want, wantErr := openV1(k, b)
		same := func(got subscription.Subscription, err error) bool {
			if wantErr != nil { // a date out of range: refused either way
				return err != nil
			}
			return err == nil && reflect.DeepEqual(got, want)
		}
		if wantErr == nil {
			opened++
		}
		if got, err := OpenRecord(k, b); !same(got, err) {
			t.Errorf("OpenRecord(%s) = %+v, %v; encoding/json read %+v, %v", b, got, err, want, wantErr)
		}
		r, err := UnmarshalRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := OpenSubscription(k, r); !same(got, err) {
			t.Errorf("OpenSubscription(%s) = %+v, %v; encoding/json read %+v, %v", b, got, err, want, wantErr)
		}
	}
	if opened < len(records)-2 {
		t.Errorf("only %d of %d records opened", opened, len(records))
	}
}

// OpenRecord refuses what is no record, and a record under another key.
func TestOpenRecordRefuses(t *testing.T) {
	key, _ := NewKey()
	r, _ := SealSubscription(key, encodeCases()[2])
	b, _ := r.Marshal()
	other, _ := NewKey()
	if _, err := OpenRecord(other, b); !errors.Is(err, ErrOpen) {
		t.Errorf("OpenRecord with another key: %v, want ErrOpen", err)
	}
	for _, b := range []string{``, `{`, `{"s":{"seats":"10"},"p":""}`, `{"s":{},"p":"!!"}`, `{"s":{"end_date":"31/03/2027"}}`, "\x01short"} {
		if s, err := OpenRecord(key, []byte(b)); err == nil {
			t.Errorf("OpenRecord(%q) = %+v, want an error", b, s)
		}
	}
}
