package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// decodeReference is Decode as it was before the hand-written reader.
func decodeReference(b []byte, data any) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if e.SpecVersion != "1.0" || e.Type == "" || e.ID == "" {
		return Event{}, fmt.Errorf("decode event: not a CloudEvents 1.0 event")
	}
	if data != nil {
		if err := json.Unmarshal(e.Data, data); err != nil {
			return Event{}, fmt.Errorf("decode %s data: %w", e.Type, err)
		}
	}
	return e, nil
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// prefilled is a NoticeDue that a caller might decode into again:
// encoding/json keeps whatever the data does not overwrite.
func prefilled() NoticeDue {
	return NoticeDue{NoticeKey: subscription.NoticeKey{SubscriptionID: "old", EndDate: subscription.MustDate("2020-01-01"), Milestone: 7},
		SubscriptionID: "old", EndDate: subscription.MustDate("2020-01-01"), Milestone: 7, DaysLeft: 7, AsOf: subscription.MustDate("2020-01-01")}
}

// checkDecode holds Decode to decodeReference on b for several targets.
func checkDecode(t *testing.T, b []byte) {
	t.Helper()
	targets := []func() any{
		func() any { return nil },
		func() any { return new(NoticeDue) },
		func() any { d := prefilled(); return &d },
		func() any { return new(NoticeOutcome) },
		func() any { return new(map[string]any) },
		func() any { return new(json.RawMessage) },
	}
	for i, target := range targets {
		gotData, wantData := target(), target()
		got, gotErr := Decode(b, gotData)
		want, wantErr := decodeReference(b, wantData)
		if errText(gotErr) != errText(wantErr) {
			t.Fatalf("Decode(%q) into target %d: error %q, want %q", b, i, errText(gotErr), errText(wantErr))
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) into target %d:\n got %#v\nwant %#v", b, i, got, want)
		}
		if !reflect.DeepEqual(gotData, wantData) {
			t.Fatalf("Decode(%q) into target %d: data\n got %#v\nwant %#v", b, i, gotData, wantData)
		}
	}
}

var strs = []string{"", "110001234567", "a-b_C9", "x:y", `"`, `\`, "<&>", "é", "\u2028", "\x00", "\xff", "null", "2027-03-31",
	"110001234567:2027-03-31:45", "1:2028-02-29:1", "1:2027-02-29:45", "1:2027-03-31:045", "1:2027-03-31:+45", "1:2027-03-31:0",
	"1:2027-03-31:999999999", "1:2027-03-31:9999999999", "1:31/03/2027:45", "::0", "0000-01-01", "9999-12-31", "2027-13-01", "2027-1-01"}

func randDate(r *rand.Rand) subscription.Date {
	switch r.IntN(4) {
	case 0:
		return subscription.Date{}
	case 1:
		return subscription.Date{Year: r.IntN(12000) - 1000, Month: time.Month(r.IntN(14)), Day: r.IntN(33)}
	}
	return subscription.DateOf(time.Date(1+r.IntN(9998), 1, 1+r.IntN(366), 0, 0, 0, 0, time.UTC))
}

func randInt(r *rand.Rand) int {
	return []int{0, 1, -1, 45, 90, 1 << 40, -1 << 62, 9223372036854775807}[r.IntN(8)]
}

func randDue(r *rand.Rand) NoticeDue {
	k := subscription.NoticeKey{SubscriptionID: strs[r.IntN(len(strs))], EndDate: randDate(r), Milestone: randInt(r)}
	if r.IntN(2) == 0 {
		k = subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.DateOf(time.Date(2027, 1, 1+r.IntN(800), 0, 0, 0, 0, time.UTC)), Milestone: 1 + r.IntN(200)}
	}
	return NoticeDue{NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: k.Milestone, DaysLeft: randInt(r), AsOf: randDate(r)}
}

func randTime(r *rand.Rand) time.Time {
	t := time.Unix(r.Int64N(1<<36)-1<<34, r.Int64N(2e9)-5e8)
	switch r.IntN(4) {
	case 0:
		return t.Truncate(time.Second)
	case 1:
		return t.In(time.FixedZone("", 3600*(r.IntN(27)-12)))
	}
	return t
}

// randEvent returns an event as json.Marshal writes it, or as a marshaller
// with other habits might.
func randEvent(t *testing.T, r *rand.Rand) []byte {
	var data any = randDue(r)
	switch r.IntN(6) {
	case 0:
		data = NoticeOutcome{NoticeKey: randDue(r).NoticeKey, Outcome: subscription.OutcomeSent, Reason: strs[r.IntN(len(strs))]}
	case 1:
		data = []any{nil, 1.5, "x", map[string]int{"a": 1}}
	}
	ev, err := New(SubjectDue(45), strs[r.IntN(len(strs))], randTime(r), data)
	if err != nil {
		t.Fatal(err)
	}
	switch r.IntN(8) {
	case 0:
		ev.SpecVersion = strs[r.IntN(len(strs))]
	case 1:
		ev.ID = strs[r.IntN(len(strs))]
	case 2:
		ev.Type = strs[r.IntN(len(strs))]
	case 3:
		ev.Time = randTime(r)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return []byte(`{}`) // a year beyond 9999
	}
	switch r.IntN(10) {
	case 0:
		var buf bytes.Buffer
		_ = json.Indent(&buf, b, "", "  ")
		b = buf.Bytes()
	case 1:
		m := map[string]any{}
		_ = json.Unmarshal(b, &m)
		b, _ = json.Marshal(m) // members in another order
	}
	return b
}

func TestDecodeMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		checkDecode(t, randEvent(t, r))
	}
}

// The fast path takes the events that json.Marshal writes for due notices.
func TestDecodeFastPathTakesMarshalledDueEvents(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 500 {
		k := subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.DateOf(time.Date(2027, 1, 1+r.IntN(800), 0, 0, 0, 0, time.UTC)), Milestone: 1 + r.IntN(200)}
		due := NoticeDue{NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: k.Milestone, DaysLeft: r.IntN(200) - 10, AsOf: subscription.MustDate("2027-01-01")}
		ev, err := New(SubjectDue(k.Milestone), k.String(), randTime(r), due)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var e Event
		var d NoticeDue
		if ok, dueOK := decodeFast(b, &e, true, &d); !ok || !dueOK {
			t.Fatalf("fast path declined %s", b)
		}
		if d != due {
			t.Fatalf("decoded %+v, want %+v", d, due)
		}
		checkDecode(t, b)
	}
}

// mutations are the tokens mutate inserts.
var mutations = []string{`"`, `\`, `\u0041`, `,`, `:`, `{`, `}`, `[`, `]`, ` `, `null`, `0`, `-`, `.5`, `e3`, `01`, `"id":"z",`, `"ID":"z",`,
	`"data":null,`, `"milestone":1,`, "\x00", "\xff", "é", `Z`, `+01:00`, `.123`}

func mutate(r *rand.Rand, b []byte) []byte { return testenv.Mutate(r, b, mutations) }

func TestDecodeMutatedMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 300 {
		b := randEvent(t, r)
		for range 20 {
			m := b
			for range 1 + r.IntN(3) {
				m = mutate(r, m)
			}
			checkDecode(t, m)
		}
	}
}

func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 20 {
		ev, _ := New(SubjectDue(45), "k", randTime(r), randDue(r))
		b, _ := json.Marshal(ev)
		f.Add(b)
	}
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"/renewals","type":"t","time":"2027-01-01T00:00:00Z","subject":"s","datacontenttype":"application/json","data":{"notice_key":"1:2027-03-31:45","subscription_id":"1","end_date":"2027-03-31","milestone":45,"days_left":-0,"as_of":""}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}
