package shred

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

// encodeCases cover every field present and absent, and strings that
// encoding/json escapes: quotes, HTML, control characters, U+2028/9,
// invalid UTF-8.
func encodeCases() []subscription.Subscription {
	seats, zero, neg := 10, 0, -3
	odd := "a\"b\\c<d>e&f\x00\x01\x1f\b\f\n\r\t\u2028\u2029\x7f é 日本 \xff\xfe end"
	return []subscription.Subscription{
		{},
		{ID: "1", EndDate: subscription.MustDate("2027-03-31")},
		{
			ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), CustomerAccount: "ACC-1", CustomerName: `A & B <Ltd> "quoted" ` + "\u2028",
			Product: "Suite", Seats: &seats, SeatsAssigned: &zero, AccessModel: subscription.MultiUser, Term: "12 months",
			StartDate: subscription.MustDate("2026-04-01"), Status: subscription.StatusActive, Timezone: "Europe/London", Locale: "en-GB",
			ResellerRep:     "Rep 1",
			ContractManager: subscription.Contact{Name: "Ada Lovelace", Email: "ada@example.com", Phone: "+44 20 7946 0000"},
			PrimaryAdmin:    subscription.Contact{Name: "Charles Babbage", Email: "cb@example.com"},
			SecondaryAdmins: []string{"sa1@example.com", "sa2@example.com"},
		},
		{
			ID: odd, EndDate: subscription.Date{Year: 12345, Month: 13, Day: 100}, CustomerAccount: odd, CustomerName: odd, Product: odd,
			Seats: &neg, AccessModel: subscription.AccessModel(odd), Term: odd, StartDate: subscription.Date{Year: -5, Month: time.January, Day: 2},
			Status: subscription.Status(odd), Timezone: odd, Locale: odd, ResellerRep: odd,
			ContractManager: subscription.Contact{Phone: odd},
			PrimaryAdmin:    subscription.Contact{Email: odd},
			SecondaryAdmins: []string{odd, "", odd},
		},
		{ID: "2", StartDate: subscription.Date{Year: 1, Month: 2, Day: 3}, SecondaryAdmins: []string{}, PrimaryAdmin: subscription.Contact{Name: "n"}},
		{ID: "3", EndDate: subscription.Date{Day: 1}, SecondaryAdmins: []string{"only"}},
	}
}

// The digest is HMAC-SHA256 over clear || 0 || personal JSON, as it always
// was, so that records stored by earlier builds compare equal to the same
// data sealed now.
func TestDigestIsHMAC(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range encodeCases() {
		r, err := SealSubscription(key, s)
		if err != nil {
			t.Fatal(err)
		}
		clear, _ := json.Marshal(s.WithoutPersonal())
		pj, _ := json.Marshal(personal{CM: s.ContractManager, PA: s.PrimaryAdmin, SA: s.SecondaryAdmins})
		mac := hmac.New(sha256.New, key[32:])
		mac.Write(clear)
		mac.Write([]byte{0})
		mac.Write(pj)
		if want := hex.EncodeToString(mac.Sum(nil)); r.Digest != want {
			t.Errorf("digest %s, want %s", r.Digest, want)
		}
		if !bytes.Equal(r.Clear, clear) {
			t.Errorf("clear %s, want %s", r.Clear, clear)
		}
		pt, err := Open(key, r.Sealed, []byte(s.ID))
		if err != nil || !bytes.Equal(pt, pj) {
			t.Errorf("sealed part opens to %s, %v; want %s", pt, err, pj)
		}
	}
}

// fixture is the subscription of the records in testdata, sealed under
// fixtureKey by the build before encoding/json wrote them: json.record by
// the hand-written JSON encoder, compact.record in the compact form that the
// Redis store wrote.
func fixture() (key []byte, s subscription.Subscription) {
	key = make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i)
	}
	seats, assigned := 25, 19
	return key, subscription.Subscription{
		ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), CustomerAccount: "ACC-1",
		CustomerName: `Lovelace & Babbage <Engines> "Ltd" ` + "\u2028 é", Product: "Suite", Seats: &seats, SeatsAssigned: &assigned,
		AccessModel: subscription.MultiUser, Term: "12 months", StartDate: subscription.MustDate("2026-04-01"),
		Status: subscription.StatusActive, Timezone: "Europe/London", Locale: "en-GB", ResellerRep: "Rep 1",
		ContractManager: subscription.Contact{Name: "Ada Lovelace", Email: "ada@example.com", Phone: "+44 20 7946 0000"},
		PrimaryAdmin:    subscription.Contact{Name: "Charles Babbage", Email: "cb@example.com"},
		SecondaryAdmins: []string{"sa1@example.com", "sa2@example.com"},
	}
}

// Records stored by earlier builds, in the JSON form and in the compact
// form, still open to their subscription, and compare as the same data as
// that subscription sealed now: importing it again leaves them unchanged.
func TestStoredRecordsStillOpen(t *testing.T) {
	key, want := fixture()
	for _, name := range []string{"json.record", "compact.record"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := UnmarshalRecord(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := OpenSubscription(key, r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !subscription.Equal(got, want) {
			t.Errorf("%s opens to %+v, want %+v", name, got, want)
		}
		if r.End != want.EndDate.Ordinal() {
			t.Errorf("%s: end %d, want %d", name, r.End, want.EndDate.Ordinal())
		}
		now, err := SealSubscription(key, want)
		if err != nil {
			t.Fatal(err)
		}
		if !SameData(r, now) {
			t.Errorf("%s: digest %s and clear part %s differ from a seal made now (%s, %s)", name, r.Digest, r.Clear, now.Digest, now.Clear)
		}
		other, _ := NewKey()
		if _, err := OpenSubscription(other, r); !errors.Is(err, ErrOpen) {
			t.Errorf("%s opens with another key: %v", name, err)
		}
	}
	compact, err := os.ReadFile(filepath.Join("testdata", "compact.record"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{compact[:compactHeaderLen-1], compact[:compactHeaderLen+10]} {
		if r, err := UnmarshalRecord(b); err == nil {
			t.Errorf("UnmarshalRecord of %d bytes of a compact record = %+v, want an error", len(b), r)
		}
	}
}
