package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/event"
	"renewals/pkg/importer"
	"renewals/pkg/kvstore"
	"renewals/pkg/natsbus"
	"renewals/pkg/testenv"
)

func csvRows(from, to int, product string) string {
	var b strings.Builder
	b.WriteString("subscription_id,end_date,product\n")
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "%d,2027-05-31,%s\n", 110000000000+i, product)
	}
	return b.String()
}

// upsertedIDs reads every renewals.subscription.upserted event in the
// stream and counts them by subscription id.
func upsertedIDs(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(event.SubjectUpserted))
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Subjects[event.SubjectUpserted])
	out := map[string]int{}
	if n == 0 {
		return out
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{event.SubjectUpserted}})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		m, err := c.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("read upserted event: %v", err)
		}
		var ev struct {
			Data struct {
				SubscriptionID string `json:"subscription_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatalf("upserted event %s: %v", m.Data(), err)
		}
		out[ev.Data.SubscriptionID]++
	}
	return out
}

// importServer is the API on a NATS server of its own with the RENEWALS
// stream and the embedded store; adjust, when set, changes the stream
// before the store opens.
func importServer(t *testing.T, adjust func(jetstream.JetStream)) (jetstream.JetStream, *httptest.Server) {
	t.Helper()
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	ctx := context.Background()
	if err := natsbus.EnsureStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(js)
	}
	store, _, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return js, serve(t, store, js, nil)
}

// The import answers 200 only once the stream holds the upserted event of
// every created or updated row: read at once after the answer, with no
// waiting, the stream has them all, each once.
func TestImportAnswersAfterEventsAreInTheStream(t *testing.T) {
	js, hs := importServer(t, nil)

	// More rows than one window of acknowledgements.
	const rows = 1500
	code, body := call(t, hs, "POST", "/api/v1/subscriptions/import", "text/csv", csvRows(1, rows, "Suite"))
	if code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	got := upsertedIDs(t, js)
	if len(got) != rows {
		t.Errorf("after the import's 200 the stream holds events for %d subscriptions, want %d", len(got), rows)
	}
	for i := 1; i <= rows; i++ {
		if id := fmt.Sprint(110000000000 + i); got[id] != 1 {
			t.Fatalf("subscription %s has %d upserted events, want 1", id, got[id])
		}
	}

	// Again, with 300 rows changed and the rest unchanged: one more event
	// for each changed row, none for the others.
	code, body = call(t, hs, "POST", "/api/v1/subscriptions/import", "text/csv", csvRows(1, 300, "Suite Premium")+csvRows(301, rows, "Suite")[len("subscription_id,end_date,product\n"):])
	if code != http.StatusOK {
		t.Fatalf("second import: %d %s", code, body)
	}
	var rep importer.Report
	if err := json.Unmarshal(body, &rep); err != nil || rep.Updated != 300 || rep.Unchanged != rows-300 {
		t.Fatalf("second import report %s: want 300 updated", body)
	}
	got = upsertedIDs(t, js)
	for i := 1; i <= rows; i++ {
		want := 1
		if i <= 300 {
			want = 2
		}
		if id := fmt.Sprint(110000000000 + i); got[id] != want {
			t.Fatalf("subscription %s has %d upserted events after the second import, want %d", id, got[id], want)
		}
	}
}

// When JetStream does not take the events (here: no stream captures the
// subject, so every publish has no responders), the import answers 503 with
// a sentence, and the rows stay stored.
func TestImportUnacknowledgedEventsAre503(t *testing.T) {
	ns := testenv.NATS(t)
	_, js := testenv.Connect(t, ns.ClientURL())
	store, _, err := kvstore.New(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	hs := serve(t, store, js, nil)
	code, body := call(t, hs, "POST", "/api/v1/subscriptions/import", "text/csv", csvRows(1, 20, "Suite"))
	if code != http.StatusServiceUnavailable {
		t.Fatalf("import without a stream: %d %s, want 503", code, body)
	}
	if e := errorBody(t, body); e.Code != "unavailable" || !strings.Contains(e.Message, "did not confirm 20 of their 20") {
		t.Errorf("error %+v", e)
	}
	if _, err := store.Get(context.Background(), "110000000007"); err != nil {
		t.Errorf("a row of the import is not stored: %v", err)
	}
}

// A stream that refuses atomic batches (declared without them, as before
// nats-server 2.12) still gets every upserted event, each once: the import
// publishes them one at a time when the first batch is refused.
func TestImportEventsWithoutAtomicBatches(t *testing.T) {
	js, hs := importServer(t, func(js jetstream.JetStream) {
		ctx := context.Background()
		st, err := js.Stream(ctx, event.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		if !cfg.AllowAtomicPublish {
			t.Fatal("positive control: EnsureStream did not allow atomic batches on this server")
		}
		cfg.AllowAtomicPublish = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	})
	const rows = 1500
	code, body := call(t, hs, "POST", "/api/v1/subscriptions/import", "text/csv", csvRows(1, rows, "Suite"))
	if code != http.StatusOK {
		t.Fatalf("import: %d %s", code, body)
	}
	got := upsertedIDs(t, js)
	for i := 1; i <= rows; i++ {
		if id := fmt.Sprint(110000000000 + i); got[id] != 1 {
			t.Fatalf("subscription %s has %d upserted events, want 1", id, got[id])
		}
	}
}
