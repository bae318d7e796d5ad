package event_test

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
)

// A due event on the wire is a CloudEvents 1.0 event in structured JSON
// mode with exactly the attributes and data members consumers read, and it
// decodes back to what was sent.
func TestDueEventShape(t *testing.T) {
	b := dueEventBytes(t)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if got, want := slices.Sorted(maps.Keys(m)), []string{"data", "datacontenttype", "id", "source", "specversion", "subject", "time", "type"}; !slices.Equal(got, want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	var data map[string]any
	if err := json.Unmarshal(m["data"], &data); err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(data)), []string{"as_of", "days_left", "end_date", "milestone", "notice_key", "subscription_id"}; !slices.Equal(got, want) {
		t.Errorf("data members %v, want %v", got, want)
	}

	var due event.NoticeDue
	e, err := event.Decode(b, &due)
	if err != nil {
		t.Fatal(err)
	}
	if e.SpecVersion != "1.0" || e.Source != event.Source || e.Type != "renewals.notice.due.v1" || e.DataContentType != "application/json" ||
		e.Subject != "110001234567:2027-03-31:45" || len(e.ID) != 32 || !e.Time.Equal(time.Date(2027, 2, 14, 8, 30, 1, 123456789, time.UTC)) {
		t.Errorf("envelope %+v", e)
	}
	want := event.NoticeDue{
		NoticeKey:      subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45},
		SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45, DaysLeft: 45, AsOf: subscription.MustDate("2027-02-14"),
	}
	if !reflect.DeepEqual(due, want) {
		t.Errorf("data %+v, want %+v", due, want)
	}
}

// Decode refuses what is not JSON, not a CloudEvents 1.0 event, or whose
// data does not fit.
func TestDecodeRefuses(t *testing.T) {
	for _, b := range []string{
		``, `{`, `[]`,
		`{"specversion":"0.3","id":"x","type":"t","data":{}}`,
		`{"specversion":"1.0","type":"t","data":{}}`,
		`{"specversion":"1.0","id":"x","data":{}}`,
		`{"specversion":"1.0","id":"x","type":"t","data":{"milestone":"45"}}`,
		`{"specversion":"1.0","id":"x","type":"t","data":{"end_date":"31/03/2027"}}`,
		`{"specversion":"1.0","id":"x","type":"t"}`,
		`{"specversion":"1.0","id":"x","type":"t","subject":"data"}`,
		`{"specversion":"1.0","id":"x","type":"t","data":[]}`,
		`{"specversion":"1.0","id":"x","type":"t","data":{"milestone":45},"time":"yesterday"}`,
	} {
		var due event.NoticeDue
		if _, err := event.Decode([]byte(b), &due); err == nil || !strings.HasPrefix(err.Error(), "decode ") {
			t.Errorf("Decode(%s) = %v, want a decode error", b, err)
		}
	}
	var due event.NoticeDue
	if _, err := event.Decode([]byte(`{"specversion":"1.0","id":"x","type":"t","data":null}`), &due); err != nil || !reflect.DeepEqual(due, event.NoticeDue{}) {
		t.Errorf("Decode of null data = %+v, %v; want no error and the value left as it was", due, err)
	}
	if _, err := event.Decode(dueEventBytes(t), event.NoticeDue{}); err == nil {
		t.Error("Decode into a value, not a pointer: no error")
	}
	if e, err := event.Decode(dueEventBytes(t), nil); err != nil || len(e.Data) == 0 {
		t.Errorf("Decode without data = %+v, %v; want the event with its data as it stands", e, err)
	}
}

// Encode writes what encoding New's event writes, byte for byte but for
// the event's random id.
func TestEncodeIsNewMarshalled(t *testing.T) {
	k := subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 45}
	at := time.Date(2027, 2, 14, 8, 30, 1, 123456789, time.FixedZone("CET", 3600))
	for _, data := range []any{
		event.NoticeOutcome{NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: 45, Outcome: subscription.OutcomeFailed,
			Reason: `550 <a&b> "quoted" ` + "\u2028 é \xff", Attempts: 2, Ambiguous: true},
		event.NoticeDue{NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: 45, DaysLeft: 45,
			ContractKeys: []subscription.NoticeKey{k, {SubscriptionID: "2", EndDate: k.EndDate, Milestone: 45}}},
		struct{}{},
	} {
		got, err := event.Encode(event.SubjectFailed, k.String(), at, data)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := event.New(event.SubjectFailed, k.String(), at, data)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(got, &e); err != nil || len(e.ID) != 32 {
			t.Fatalf("%s: id %q, %v", got, e.ID, err)
		}
		ev.ID = e.ID
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("Encode wrote\n%s\nwant\n%s", got, want)
		}
	}
}
