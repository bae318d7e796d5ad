package shred

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

func checkEncoding(t *testing.T, s subscription.Subscription) {
	t.Helper()
	want, err := json.Marshal(s.WithoutPersonal())
	if err != nil {
		t.Fatal(err)
	}
	if got := appendClear([]byte("x"), &s); !bytes.Equal(got[1:], want) {
		t.Errorf("appendClear:\n got %s\nwant %s", got[1:], want)
	}
	want, err = json.Marshal(personal{CM: s.ContractManager, PA: s.PrimaryAdmin, SA: s.SecondaryAdmins})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendPersonal([]byte("x"), &s); !bytes.Equal(got[1:], want) {
		t.Errorf("appendPersonal:\n got %s\nwant %s", got[1:], want)
	}
}

func TestEncodingMatchesEncodingJSON(t *testing.T) {
	for _, s := range encodeCases() {
		checkEncoding(t, s)
	}
}

func FuzzEncodingMatchesEncodingJSON(f *testing.F) {
	f.Add("110001234567", "Customer", "cm@example.com", "+44", "sa@example.com", 2027, 3, 31, 5)
	f.Add("<&>", "\u2028\xff", "", "\x00", "", 0, 0, 0, -1)
	f.Fuzz(func(t *testing.T, id, text, email, phone, sa string, y, m, d, seats int) {
		s := subscription.Subscription{
			ID: id, EndDate: subscription.Date{Year: y, Month: time.Month(m), Day: d}, CustomerName: text, Product: phone,
			Seats: &seats, StartDate: subscription.Date{Year: d, Month: time.Month(y), Day: m}, Status: subscription.Status(text),
			ContractManager: subscription.Contact{Name: text, Email: email, Phone: phone},
			PrimaryAdmin:    subscription.Contact{Email: sa},
		}
		if sa != "" {
			s.SecondaryAdmins = []string{sa, email}
		}
		checkEncoding(t, s)
	})
}

// The digest is HMAC-SHA256 over clear || 0 || personal JSON, as it always
// was, so that records stored before the hand-written encoding compare
// equal to the same data sealed now.
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

// AppendRecord writes what Record.Marshal writes for the same record.
func TestAppendRecordMatchesMarshal(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range encodeCases() {
		b, err := AppendRecord([]byte("prefix"), key, &s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("prefix")) {
			t.Fatalf("AppendRecord lost dst: %q", b)
		}
		b = b[len("prefix"):]
		r, err := UnmarshalRecord(b)
		if err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		want, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("AppendRecord:\n got %s\nwant %s", b, want)
		}
		if got := string(b[6:DigestPrefixLen]); got != r.Digest {
			t.Errorf("digest at %q, want %q", got, r.Digest)
		}
		ref, err := SealSubscription(key, s)
		if err != nil {
			t.Fatal(err)
		}
		if !SameData(r, ref) || r.End != ref.End {
			t.Errorf("AppendRecord's record %+v differs from SealSubscription's %+v", r, ref)
		}
		var back subscription.Subscription
		if b, _ := json.Marshal(s); json.Unmarshal(b, &back) != nil {
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
