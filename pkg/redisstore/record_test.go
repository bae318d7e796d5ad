package redisstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// splitRecord must read every record shred writes as the JSON decoder does,
// whatever the strings hold (quotes, the ,"p":" that starts the sealed
// part, escapes, non-ASCII), and refuse any other shape.
func TestSplitRecordReadsWhatShredWrites(t *testing.T) {
	key, err := shred.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	pieces := []string{"Acme", " ", `"`, `\`, `,"p":"`, `","p":"x"}`, `{"s":1}`, "\u2028", "é", "日本", "<&>", "\t", "", "+/="}
	r := rand.New(rand.NewPCG(5, 6))
	text := func() string {
		var b strings.Builder
		for range r.IntN(6) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		return b.String()
	}
	for i := range 2000 {
		seats := r.IntN(100)
		s := subscription.Subscription{
			ID: fmt.Sprintf("S%d", i), EndDate: subscription.MustDate("2027-03-31").AddDays(r.IntN(4000) - 2000),
			CustomerName: text(), CustomerAccount: text(), Product: text(), Term: text(), Seats: &seats,
			ContractManager: subscription.Contact{Name: text(), Email: "cm@example.com", Phone: text()},
			PrimaryAdmin:    subscription.Contact{Name: text()},
		}
		rec, err := shred.SealSubscription(key, s)
		if err != nil {
			t.Fatal(err)
		}
		b, err := rec.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want, err := shred.UnmarshalRecord(b)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := splitRecord(b)
		if !ok || got.Digest != want.Digest || got.End != want.End || !bytes.Equal(got.Clear, want.Clear) || !bytes.Equal(got.Sealed, want.Sealed) {
			t.Fatalf("record %s: splitRecord = %+v, %v; the JSON decoder reads %+v", b, got, ok, want)
		}
		x, err := open(b, key)
		if err != nil || x.ContractManager != s.ContractManager || x.CustomerName != s.CustomerName {
			t.Fatalf("open(%s) = %+v, %v", b, x, err)
		}
	}
	for _, b := range []string{``, `{}`, `{"d":"ab","e":1}`, `{"d":"a\"b","e":1,"s":{},"p":""}`, `{"d":"ab","e":1.5,"s":{},"p":""}`,
		`{"d":"ab","e":1,"s":{},"p":null}`, `{"d":"ab","e":1,"s":{},"p":"A\/=="}`, `{"d":"ab","e":1,"s":{},"x":2,"p":"AA=="}`, `{"d":"ab","e":1,"s":{},"p":"AA==","v":2}`} {
		if r, ok := splitRecord([]byte(b)); ok {
			t.Errorf("splitRecord(%s) = %+v, true; want false", b, r)
		}
	}
	// A shape it misreads still opens, through the JSON decoder.
	rec, err := shred.SealSubscription(key, subscription.Subscription{ID: "X1", EndDate: subscription.MustDate("2027-03-31")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	extra := bytes.Replace(b, []byte(`,"p":"`), []byte(`,"x":{"y":1},"p":"`), 1)
	if x, err := open(extra, key); err != nil || x.ID != "X1" {
		t.Errorf("open with an unknown field = %+v, %v; want the subscription", x, err)
	}
}
