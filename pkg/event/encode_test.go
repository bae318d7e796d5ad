package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

func checkOutcome(t *testing.T, o NoticeOutcome) {
	t.Helper()
	want, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendOutcome([]byte("x"), &o); !bytes.Equal(got[1:], want) {
		t.Fatalf("appendOutcome:\n got %s\nwant %s", got[1:], want)
	}
	for _, data := range []any{o, &o} {
		ev, err := New(OutcomeSubject(o.Outcome), "s", time.Unix(0, 0), data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Data, want) {
			t.Fatalf("New's data:\n got %s\nwant %s", ev.Data, want)
		}
	}
}

var odd = "a\"b\\c<d>e&f\x00\x01\x1f\b\f\n\r\t\u2028\u2029\x7f é 日本 \xff\xfe\xed\xa0\x80 end"

func TestAppendOutcomeMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	texts := append(strs, odd, "retries exhausted: dial tcp 127.0.0.1:25: connect: connection refused")
	dates := []subscription.Date{{}, subscription.MustDate("2027-03-31"), {Year: 12345, Month: 13, Day: 100}, {Year: -5, Month: 1, Day: 2}, {Day: 1}, {Year: 9999, Month: 99, Day: 99}, {Year: 10000}}
	outcomes := []subscription.Outcome{subscription.OutcomeSent, subscription.OutcomeSkipped, subscription.OutcomeFailed, subscription.OutcomeUndeliverable, "", subscription.Outcome(odd)}
	for range 5000 {
		pick := func() string { return texts[r.IntN(len(texts))] }
		k := subscription.NoticeKey{SubscriptionID: pick(), EndDate: dates[r.IntN(len(dates))], Milestone: randInt(r)}
		if r.IntN(3) == 0 {
			k.EndDate = randDate(r)
		}
		checkOutcome(t, NoticeOutcome{
			NoticeKey: k, SubscriptionID: pick(), EndDate: randDate(r), Milestone: randInt(r), Outcome: outcomes[r.IntN(len(outcomes))],
			Reason: pick(), Role: subscription.Role(pick()), Attempts: randInt(r), Ambiguous: r.IntN(2) == 0,
		})
	}
	if ev, err := New(SubjectFailed, "s", time.Unix(0, 0), (*NoticeOutcome)(nil)); err != nil || string(ev.Data) != "null" {
		t.Fatalf("New of a nil *NoticeOutcome: %s, %v", ev.Data, err)
	}
}

func FuzzAppendOutcome(f *testing.F) {
	f.Add("110001234567", 2027, 3, 31, 45, "sent", odd, "contract_manager", 1, true)
	f.Fuzz(func(t *testing.T, id string, y, m, d, ms int, outcome, reason, role string, attempts int, ambiguous bool) {
		date := subscription.Date{Year: y, Month: time.Month(m), Day: d}
		checkOutcome(t, NoticeOutcome{
			NoticeKey: subscription.NoticeKey{SubscriptionID: id, EndDate: date, Milestone: ms}, SubscriptionID: id, EndDate: date,
			Milestone: ms, Outcome: subscription.Outcome(outcome), Reason: reason, Role: subscription.Role(role), Attempts: attempts, Ambiguous: ambiguous,
		})
	})
}

func checkMarshal(t *testing.T, e Event) {
	t.Helper()
	want, wantErr := json.Marshal(e)
	got, err := Marshal(e)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("Marshal(%+v):\n got %s, %v\nwant %s, %v", e, got, err, want, wantErr)
	}
}

func TestMarshalMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	texts := append(strs, odd, "renewals.notice.sent.v1", "")
	datas := [][]byte{nil, {}, []byte("null"), []byte(`{"a":1}`), []byte(`{"a": 1}`), []byte(`{"a":"x y"}`), []byte(`{"a":"<&>"}`),
		[]byte("{\"a\":\"\u2028\"}"), []byte("{\"a\":\"\u2013\"}"), []byte(`{"a":"\"}`), []byte(`{"a":"\\"}`), []byte(`{"a":"\\\"<"}`),
		[]byte(`[1,2`), []byte(`{"a":1}x`), []byte(" {}"), []byte("\"\xff\""), []byte(`"\u003c"`)}
	zones := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+1800), time.FixedZone("y", -12*3600)}
	times := []time.Time{{}, time.Date(2027, 3, 31, 6, 0, 0, 123456789, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}
	for range 5000 {
		pick := func() string { return texts[r.IntN(len(texts))] }
		var data []byte
		if r.IntN(2) == 0 {
			data = datas[r.IntN(len(datas))]
		} else {
			o := NoticeOutcome{Reason: pick(), Outcome: subscription.Outcome(pick()), Attempts: randInt(r), Ambiguous: r.IntN(2) == 0}
			data = appendOutcome(nil, &o)
		}
		at := times[r.IntN(len(times))]
		if r.IntN(2) == 0 {
			at = time.Unix(r.Int64N(1<<34), r.Int64N(1e9)).In(zones[r.IntN(len(zones))])
		}
		checkMarshal(t, Event{SpecVersion: pick(), ID: pick(), Source: pick(), Type: pick(), Time: at, Subject: pick(), DataContentType: pick(), Data: data})
	}
}

func FuzzMarshal(f *testing.F) {
	f.Add("1.0", "id", "/renewals", "renewals.notice.sent.v1", int64(1800000000), "110001234567:2027-03-31:45", "application/json", []byte(`{"reason":"a b <c>"}`))
	f.Fuzz(func(t *testing.T, spec, id, source, typ string, unix int64, subject, ct string, data []byte) {
		checkMarshal(t, Event{SpecVersion: spec, ID: id, Source: source, Type: typ, Time: time.Unix(unix, 0).UTC(), Subject: subject, DataContentType: ct, Data: data})
	})
}
