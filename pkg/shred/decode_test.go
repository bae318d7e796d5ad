package shred

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// checkDecode holds decodeClear and decodePersonal to json.Unmarshal on b:
// each either gives exactly what encoding/json gives or declines, and never
// accepts what encoding/json rejects. It reports whether each took b.
func checkDecode(t *testing.T, b []byte) (clearOK, personalOK bool) {
	t.Helper()
	var want subscription.Subscription
	werr := json.Unmarshal(b, &want)
	var got subscription.Subscription
	if clearOK = decodeClear(b, &got); clearOK {
		if werr != nil {
			t.Errorf("decodeClear accepted %q, which encoding/json rejects: %v", b, werr)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeClear(%q):\n got %#v\nwant %#v", b, got, want)
		}
	}
	var wantP personal
	werr = json.Unmarshal(b, &wantP)
	var gotP personal
	if personalOK = decodePersonal(b, &gotP); personalOK {
		if werr != nil {
			t.Errorf("decodePersonal accepted %q, which encoding/json rejects: %v", b, werr)
		} else if !reflect.DeepEqual(gotP, wantP) {
			t.Errorf("decodePersonal(%q):\n got %#v\nwant %#v", b, gotP, wantP)
		}
	}
	return clearOK, personalOK
}

// readable reports whether d reads back from its JSON (the zero Date or a
// real calendar day from year 0 to 9999).
func readable(d subscription.Date) bool {
	if d.IsZero() {
		return true
	}
	back, err := subscription.ParseDate(d.String())
	return err == nil && back == d
}

// checkSubscription encodes s as the store does and as json.Marshal does,
// and checks the fast path on both: it must take the encoders' shapes
// whenever the dates read back at all.
func checkSubscription(t *testing.T, s subscription.Subscription) {
	t.Helper()
	clear := appendClear(nil, &s)
	pj := appendPersonal(nil, &s)
	clearOK, _ := checkDecode(t, clear)
	_, personalOK := checkDecode(t, pj)
	if !clearOK && readable(s.EndDate) && readable(s.StartDate) {
		t.Errorf("decodeClear declined the encoder's %q", clear)
	}
	if !personalOK {
		t.Errorf("decodePersonal declined the encoder's %q", pj)
	}
	// json.Marshal of the whole subscription has personal fields that
	// neither shape has: both must decline it or agree.
	if whole, err := json.Marshal(s); err == nil {
		checkDecode(t, whole)
	}
	if indented, err := json.MarshalIndent(s.WithoutPersonal(), "", " "); err == nil {
		checkDecode(t, indented)
	}
}

// adversarial are strings that encoding/json escapes or reads specially.
var adversarial = []string{
	"", "a", "110001234567", `"`, `\`, `\"`, `"\`, "\\u0041", `\n`, "/", "</script>", "a & b <c>",
	"\x00", "\x01\x1f", "\b\f\n\r\t", "\x7f", "é", "日本語", "😀", "\u2028", "\u2029", "a\u2028b\u2029c",
	"\xff", "\xfe\xff", "\xed\xa0\x80", "\xc3", "a\xffb", "\ufffd", "\uffff", "\U0010ffff",
	" leading", "trailing ", "null", "{}", "[]", `{"a":1}`, "2027-03-31", ":", "x:2027-03-31:45",
}

func randString(r *rand.Rand) string {
	switch r.IntN(4) {
	case 0:
		return ""
	case 1:
		return adversarial[r.IntN(len(adversarial))]
	}
	n := r.IntN(12)
	b := make([]byte, 0, n*2)
	for range n {
		if r.IntN(3) == 0 {
			b = append(b, adversarial[r.IntN(len(adversarial))]...)
		} else if r.IntN(4) == 0 {
			b = append(b, byte(r.IntN(256)))
		} else {
			b = append(b, byte('a'+r.IntN(26)))
		}
	}
	return string(b)
}

func randDate(r *rand.Rand) subscription.Date {
	switch r.IntN(6) {
	case 0:
		return subscription.Date{}
	case 1: // anything, most of it not a day
		return subscription.Date{Year: r.IntN(20000) - 5000, Month: time.Month(r.IntN(15) - 1), Day: r.IntN(34) - 1}
	case 2: // the edges of months and leap years
		return subscription.Date{Year: []int{0, 1, 1900, 2000, 2024, 2027, 2100, 9999}[r.IntN(8)], Month: time.Month(1 + r.IntN(12)), Day: 28 + r.IntN(4)}
	}
	return subscription.DateOf(time.Date(1900+r.IntN(300), 1, 1+r.IntN(366), 0, 0, 0, 0, time.UTC))
}

func randInt(r *rand.Rand) *int {
	var v int
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		v = 0
	case 2:
		v = []int{-1, 1, -9223372036854775808, 9223372036854775807, 999999999999999999, 1000000000000000000}[r.IntN(6)]
	default:
		v = r.IntN(2000) - 100
	}
	return &v
}

func randSubscription(r *rand.Rand) subscription.Subscription {
	s := subscription.Subscription{
		ID: randString(r), EndDate: randDate(r), CustomerAccount: randString(r), CustomerName: randString(r),
		Product: randString(r), Seats: randInt(r), SeatsAssigned: randInt(r), AccessModel: subscription.AccessModel(randString(r)),
		Term: randString(r), StartDate: randDate(r), Status: subscription.Status(randString(r)), Timezone: randString(r),
		Locale: randString(r), ResellerRep: randString(r),
		ContractManager: subscription.Contact{Name: randString(r), Email: randString(r), Phone: randString(r)},
		PrimaryAdmin:    subscription.Contact{Name: randString(r), Email: randString(r), Phone: randString(r)},
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		s.SecondaryAdmins = []string{}
	default:
		for range 1 + r.IntN(4) {
			s.SecondaryAdmins = append(s.SecondaryAdmins, randString(r))
		}
	}
	return s
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range encodeCases() {
		checkSubscription(t, s)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		checkSubscription(t, randSubscription(r))
	}
}

// mutations are the tokens mutate inserts.
var mutations = []string{`"`, `\`, `\u`, `\ud800`, `\udc00`, `\u0041`, `\'`, `,`, `:`, `{`, `}`, `[`, `]`, ` `, "\n", `null`, `0`, `-`, `.5`,
	`e3`, `01`, `"subscription_id":"x",`, `"Subscription_ID":"y",`, `"seats":1,`, `"cm":{},`, `"sa":null,`, `"sa":[],`, "\x00", "\xff", "é"}

// mutate changes b in one of the ways a damaged or foreign record differs
// from ours.
func mutate(r *rand.Rand, b []byte) []byte { return testenv.Mutate(r, b, mutations) }

func TestDecodeMutatedMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var seeds [][]byte
	for _, s := range encodeCases() {
		seeds = append(seeds, appendClear(nil, &s), appendPersonal(nil, &s))
	}
	for range 200 {
		s := randSubscription(r)
		seeds = append(seeds, appendClear(nil, &s), appendPersonal(nil, &s))
	}
	for _, b := range seeds {
		for range 30 {
			m := b
			for range 1 + r.IntN(3) {
				m = mutate(r, m)
			}
			checkDecode(t, m)
		}
	}
}

// FuzzDecodeSubscription builds subscriptions from fuzzed fields.
func FuzzDecodeSubscription(f *testing.F) {
	f.Add("110001234567", "Customer", "cm@example.com", "+44", "sa@example.com", 2027, 3, 31, 5, uint8(0))
	f.Add("<&>\"\\", "\u2028\xff", "", "\x00", "", 2028, 2, 29, -1, uint8(255))
	f.Add("", "\xed\xa0\x80", "日本", "\t", "\\u0000", 0, 0, 0, 0, uint8(6))
	f.Fuzz(func(t *testing.T, id, text, email, phone, sa string, y, m, d, seats int, flags uint8) {
		s := subscription.Subscription{
			ID: id, EndDate: subscription.Date{Year: y, Month: time.Month(m), Day: d}, CustomerName: text, Product: phone,
			Status: subscription.Status(text), Locale: email,
			ContractManager: subscription.Contact{Name: text, Email: email, Phone: phone},
			PrimaryAdmin:    subscription.Contact{Email: sa},
		}
		if flags&1 != 0 {
			s.Seats = &seats
		}
		if flags&2 != 0 {
			s.SeatsAssigned = &d
		}
		if flags&4 != 0 {
			s.StartDate = subscription.Date{Year: d, Month: time.Month(y), Day: m}
		}
		if flags&8 != 0 {
			s.SecondaryAdmins = []string{}
		}
		if flags&16 != 0 {
			s.SecondaryAdmins = []string{sa, email}
		}
		if flags&32 != 0 {
			s.ContractManager = subscription.Contact{}
		}
		checkSubscription(t, s)
	})
}

// FuzzDecodeBytes feeds the fast path arbitrary bytes, starting from the
// encoders' shapes.
func FuzzDecodeBytes(f *testing.F) {
	for _, s := range encodeCases() {
		f.Add(appendClear(nil, &s))
		f.Add(appendPersonal(nil, &s))
	}
	f.Add([]byte(`{"seats":01}`))
	f.Add([]byte(`{"sa":["\ud83d\ude00"],"cm":{"name":"\u00e9"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}
