package e2e_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"renewals/pkg/event"
	"renewals/pkg/importer"
	"renewals/pkg/natsbus"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// The import fixtures: one per format, each with rejected rows, an unknown
// column and (CSV, NDJSON) a repeated id. Their contacts are the personal
// data that no event may carry.
const (
	apiCSV = "subscription_id,End_Date,customer_name,cm_name,cm_email,cm_phone,Region\r\n" +
		"130000000001,2027-03-31,\"Acme, Ltd\",Ada Lovelace,ada@acme.example,+44 20 7946 0001,EMEA\r\n" +
		"130000000002,2027-02-30,Beta,Bob Bee,bob@beta.example,,EMEA\r\n" +
		"130000000003,2027-04-30,Gamma,Cy Gamma,cy@gamma.example,,APAC\r\n" +
		"130000000001,2027-03-31,\"Acme, Ltd\",Ada Lovelace,ada@acme.example,+44 20 7946 0001,EMEA\r\n" +
		"130000000004,2027-05-31,Delta,Dee Delta,not-an-email,,\r\n"
	apiJSON = `[
  {"subscription_id": "130000000005", "end_date": "2027-06-30", "seats": 10, "customer_name": "Epsilon", "cm_name": "Eve Epsilon", "cm_email": "eve@epsilon.example", "extra": "x"},
  {"subscription_id": "130000000006", "end_date": "2027-06-31"},
  {"subscription_id": "130000000003", "end_date": "2027-04-30", "customer_name": "Gamma", "cm_name": "Cy Gamma", "cm_email": "cy@gamma.example", "status": "renewal_in_progress"}
]
`
	apiNDJSON = `{"subscription_id": "130000000007", "end_date": "2027-07-31", "cm_name": "Gus Eta", "cm_email": "gus@eta.example", "cm_phone": "+1 555 0100"}
{"subscription_id": "130000000008", "end_date": "2027-07-31", "access_model": "shared"}
{"subscription_id": "130000000007", "end_date": "2027-08-31", "cm_name": "Gus Eta", "cm_email": "gus@eta.example", "cm_phone": "+1 555 0100"}
`
	apiIngest    = `{"subscription_id": "130000000009", "end_date": "2027-09-30", "cm_name": "Ivy Iota", "cm_email": "ivy@iota.example", "cm_phone": "+44 161 496 0009"}`
	apiIngestBad = `{"subscription_id": "130000000010", "end_date": "30/09/2027", "cm_name": "Jo Kappa", "cm_email": "Jo <jo@kappa.example>"}`
)

// apiPersonal is every name, email address and phone number in the fixtures.
var apiPersonal = []string{
	"Ada Lovelace", "ada@acme.example", "+44 20 7946 0001", "Bob Bee", "bob@beta.example",
	"Cy Gamma", "cy@gamma.example", "Dee Delta", "not-an-email", "Eve Epsilon", "eve@epsilon.example",
	"Gus Eta", "gus@eta.example", "+1 555 0100", "Ivy Iota", "ivy@iota.example", "+44 161 496 0009",
	"Jo Kappa", "jo@kappa.example", "Eve Renamed",
}

var csvRejections = []importer.Rejection{
	{Line: 3, SubscriptionID: "130000000002", Field: "end_date", Reason: `"2027-02-30" is not a date: use YYYY-MM-DD, e.g. 2027-05-31`},
	{Line: 6, SubscriptionID: "130000000004", Field: "cm_email", Reason: `"not-an-email" is not an email address: give one address such as jane@example.com`},
}

// upsert is what one renewals.subscription.upserted event says.
type upsert struct {
	ID      string
	Change  string
	NewTerm bool
}

// upsertEvents follows renewals.subscription.upserted on the embedded NATS
// server. The API publishes them on one connection, so they arrive in the
// order the changes were made: the next events expected also prove that
// nothing was published in between.
type upsertEvents struct {
	ch chan *nats.Msg
}

func watchUpserts(t *testing.T, natsURL string) *upsertEvents {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ev := &upsertEvents{ch: make(chan *nats.Msg, 10000)}
	sub, err := nc.ChanSubscribe(event.SubjectUpserted, ev.ch)
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ev
}

// expect reads the next len(want) events and holds each to want, and to the
// rule that an event carries ids, dates and the change only.
func (e *upsertEvents) expect(t *testing.T, what string, want ...upsert) {
	t.Helper()
	for i, w := range want {
		var m *nats.Msg
		select {
		case m = <-e.ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: event %d of %d (%v) not published within 10s", what, i+1, len(want), w)
		}
		for _, p := range apiPersonal {
			if bytes.Contains(m.Data, []byte(p)) {
				t.Errorf("%s: upserted event holds personal data %q: %s", what, p, m.Data)
			}
		}
		var data map[string]any
		ev, err := event.Decode(m.Data, &data)
		if err != nil {
			t.Fatalf("%s: %v: %s", what, err, m.Data)
		}
		for k := range data {
			switch k {
			case "subscription_id", "change", "end_date", "status", "new_term":
			default:
				t.Errorf("%s: upserted event has field %q: only ids, dates, status and the change belong there", what, k)
			}
		}
		got := upsert{ID: ev.Subject, Change: data["change"].(string)}
		got.NewTerm, _ = data["new_term"].(bool)
		if data["subscription_id"] != ev.Subject {
			t.Errorf("%s: event subject %q, data subscription_id %v", what, ev.Subject, data["subscription_id"])
		}
		if got != w {
			t.Errorf("%s: event %d is %+v, want %+v", what, i+1, got, w)
		}
	}
}

// send makes an authenticated request with a raw body and returns the
// status and the answer.
func send(t *testing.T, s *e2e.Server, method, path, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b.Bytes()
}

func importVia(t *testing.T, s *e2e.Server, contentType, body string) importer.Report {
	t.Helper()
	code, raw := send(t, s, http.MethodPost, "/api/v1/subscriptions/import", contentType, body)
	if code != http.StatusOK {
		t.Fatalf("import (%s): %d %s", contentType, code, raw)
	}
	var r importer.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("import report: %v: %s", err, raw)
	}
	return r
}

func checkReport(t *testing.T, what string, got, want importer.Report) {
	t.Helper()
	if want.Encoding == "" {
		want.Encoding = importer.EncodingUTF8 // every fixture is plain UTF-8
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s: report\n%s\nwant\n%s", what, g, w)
	}
}

// apiError decodes an error answer and checks its status and code.
func apiError(t *testing.T, what string, code int, raw []byte, wantStatus int, wantCode string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Error == "" {
		t.Errorf("%s: answer is not JSON {error, code}: %s", what, raw)
	}
	if code != wantStatus || e.Code != wantCode {
		t.Errorf("%s: %d %q, want %d %q: %s", what, code, e.Code, wantStatus, wantCode, raw)
	}
	return e.Error
}

// TestAPI drives one server through the API: imports in each format with
// their exact reports, re-import, a new term, PUT and GET, the CRM ingest
// subject, preview, forecast and the error answers; and holds every
// renewals.subscription.upserted event to the changes made, with ids only.
func TestAPI(t *testing.T) {
	t.Parallel()
	listen := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	s := e2e.Start(t, e2e.Options{Env: map[string]string{"RENEWALS_NATS_LISTEN": listen}})
	events := watchUpserts(t, s.NATSURLAs(t, natsbus.DashboardUser))

	t.Run("import CSV", func(t *testing.T) {
		got := importVia(t, s, "text/csv; charset=utf-8", apiCSV)
		checkReport(t, "CSV", got, importer.Report{
			Rows: 5, Created: 2, Unchanged: 1, Rejected: 2, Rejections: csvRejections,
			UnknownColumns: []string{"region"},
			Duplicates:     []importer.Duplicate{{SubscriptionID: "130000000001", Lines: []int{2, 5}}},
		})
		events.expect(t, "CSV import", upsert{"130000000001", "created", false}, upsert{"130000000003", "created", false})
	})
	t.Run("re-import unchanged", func(t *testing.T) {
		got := importVia(t, s, "text/csv", apiCSV)
		checkReport(t, "CSV again", got, importer.Report{
			Rows: 5, Unchanged: 3, Rejected: 2, Rejections: csvRejections,
			UnknownColumns: []string{"region"},
			Duplicates:     []importer.Duplicate{{SubscriptionID: "130000000001", Lines: []int{2, 5}}},
		})
		// Nothing published: the next events are the JSON import's.
	})
	t.Run("import JSON", func(t *testing.T) {
		got := importVia(t, s, "application/json", apiJSON)
		checkReport(t, "JSON", got, importer.Report{
			Rows: 3, Created: 1, Updated: 1, Rejected: 1,
			Rejections: []importer.Rejection{
				{Line: 3, SubscriptionID: "130000000006", Field: "end_date", Reason: `"2027-06-31" is not a date: use YYYY-MM-DD, e.g. 2027-05-31`},
			},
			UnknownColumns: []string{"extra"}, Duplicates: []importer.Duplicate{},
		})
		events.expect(t, "JSON import (after the unchanged re-import)",
			upsert{"130000000005", "created", false}, upsert{"130000000003", "updated", false})
	})
	t.Run("import NDJSON", func(t *testing.T) {
		got := importVia(t, s, "application/x-ndjson", apiNDJSON)
		checkReport(t, "NDJSON", got, importer.Report{
			Rows: 3, Created: 1, Updated: 1, Rejected: 1,
			Rejections: []importer.Rejection{
				{Line: 2, SubscriptionID: "130000000008", Field: "access_model", Reason: `"shared" is not an access model: use single-user or multi-user`},
			},
			UnknownColumns: []string{},
			Duplicates:     []importer.Duplicate{{SubscriptionID: "130000000007", Lines: []int{1, 3}}},
		})
		events.expect(t, "NDJSON import", upsert{"130000000007", "created", false}, upsert{"130000000007", "updated", true})
	})
	t.Run("new end date is a new term", func(t *testing.T) {
		body := "subscription_id,end_date,customer_name,cm_name,cm_email,cm_phone\n" +
			"130000000001,2028-03-31,\"Acme, Ltd\",Ada Lovelace,ada@acme.example,+44 20 7946 0001\n"
		got := importVia(t, s, "text/csv", body)
		checkReport(t, "renewal", got, importer.Report{
			Rows: 1, Updated: 1, Rejections: []importer.Rejection{}, UnknownColumns: []string{}, Duplicates: []importer.Duplicate{},
		})
		events.expect(t, "renewal", upsert{"130000000001", "updated", true})
		var rec map[string]any
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/130000000001", nil, &rec); code != http.StatusOK || rec["end_date"] != "2028-03-31" {
			t.Errorf("GET after the renewal: %d %v, want end_date 2028-03-31", code, rec)
		}
	})
	t.Run("missing required column", func(t *testing.T) {
		code, raw := send(t, s, http.MethodPost, "/api/v1/subscriptions/import", "text/csv", "subscription_id,expiry\n130000000011,2027-01-31\n")
		if msg := apiError(t, "missing column", code, raw, http.StatusUnprocessableEntity, "unprocessable"); !strings.Contains(msg, "end_date") {
			t.Errorf("422 does not name the missing column end_date: %q", msg)
		}
	})

	t.Run("GET returns the vendor's fields, PUT takes them back", func(t *testing.T) {
		const path = "/api/v1/subscriptions/130000000020"
		rec := map[string]any{
			"subscription_id": "130000000020", "end_date": "2027-06-30", "status": "active",
			"cm_email": "zed@zeta.example", "contract_number": "7001", "autorenew_date": "2027-06-30", "team": "Zeta design",
			"quote_number": "Q-20", "quote_expiry": "2027-05-31", "quote_url": "https://quotes.example/q/20",
		}
		var res map[string]string
		if code := s.API(t, http.MethodPut, path, rec, &res); code != http.StatusOK || res["change"] != "created" {
			t.Fatalf("PUT: %d %v, want 200 created", code, res)
		}
		events.expect(t, "PUT of a new subscription", upsert{"130000000020", "created", false})
		var got map[string]any
		if code := s.API(t, http.MethodGet, path, nil, &got); code != http.StatusOK || !reflect.DeepEqual(got, rec) {
			t.Errorf("GET = %d %v, want %v", code, got, rec)
		}
		if code := s.API(t, http.MethodPut, path, got, &res); code != http.StatusOK || res["change"] != "unchanged" {
			t.Errorf("PUT of what GET returned: %d %v, want 200 unchanged", code, res)
		}
	})
	t.Run("GET and PUT", func(t *testing.T) {
		const path = "/api/v1/subscriptions/130000000005"
		var rec map[string]any
		if code := s.API(t, http.MethodGet, path, nil, &rec); code != http.StatusOK {
			t.Fatalf("GET: %d", code)
		}
		want := map[string]any{
			"subscription_id": "130000000005", "end_date": "2027-06-30", "status": "active", "seats": 10.0,
			"customer_name": "Epsilon", "cm_name": "Eve Epsilon", "cm_email": "eve@epsilon.example",
		}
		if !reflect.DeepEqual(rec, want) {
			t.Errorf("GET = %v, want %v", rec, want)
		}
		var res map[string]string
		if code := s.API(t, http.MethodPut, path, rec, &res); code != http.StatusOK || res["change"] != "unchanged" {
			t.Errorf("PUT of what GET returned: %d %v, want 200 unchanged", code, res)
		}

		rec["seats"], rec["cm_name"] = 12, "Eve Renamed"
		if code := s.API(t, http.MethodPut, path, rec, &res); code != http.StatusOK || res["change"] != "updated" {
			t.Errorf("PUT with 12 seats: %d %v, want 200 updated", code, res)
		}
		events.expect(t, "PUT (after the unchanged PUT)", upsert{"130000000005", "updated", false})
		var again map[string]any
		s.API(t, http.MethodGet, path, nil, &again)
		if again["seats"] != 12.0 || again["cm_name"] != "Eve Renamed" {
			t.Errorf("GET after PUT = %v, want seats 12 and the new name", again)
		}

		type fields struct {
			Error  string `json:"error"`
			Code   string `json:"code"`
			Fields []struct {
				Field  string `json:"field"`
				Reason string `json:"reason"`
			} `json:"fields"`
		}
		check := func(what, body string, wantFields ...string) {
			t.Helper()
			code, raw := send(t, s, http.MethodPut, path, "application/json", body)
			var f fields
			if err := json.Unmarshal(raw, &f); err != nil || code != http.StatusUnprocessableEntity || f.Code != "unprocessable" || f.Error == "" {
				t.Errorf("PUT %s: %d %s, want 422 unprocessable", what, code, raw)
				return
			}
			if bytes.Contains(raw, []byte(`"Field"`)) || bytes.Contains(raw, []byte(`"Reason"`)) {
				t.Errorf("PUT %s: fields not named field and reason, as in an import report: %s", what, raw)
			}
			var got []string
			for _, x := range f.Fields {
				if x.Reason == "" {
					t.Errorf("PUT %s: field %s has no reason: %s", what, x.Field, raw)
				}
				got = append(got, x.Field)
			}
			if !reflect.DeepEqual(got, wantFields) {
				t.Errorf("PUT %s: fields %v, want %v: %s", what, got, wantFields, raw)
			}
		}
		check("bad values", `{"subscription_id":"130000000005","end_date":"30/06/2027","seats":"ten","cm_email":"Eve <eve@epsilon.example>"}`,
			"end_date", "seats", "cm_email")
		check("another id", `{"subscription_id":"130000000006","end_date":"2027-06-30"}`, "subscription_id")
		check("no id", `{"end_date":"2027-06-30"}`, "subscription_id")
		check("not an object", `[1]`, "")
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/130000000006", nil, nil); code != http.StatusNotFound {
			t.Errorf("GET the id of a rejected PUT body: %d, want 404", code)
		}
	})

	t.Run("CRM ingest", func(t *testing.T) {
		nc, err := nats.Connect(s.NATSURLAs(t, natsbus.ServiceUser))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		type reply struct {
			SubscriptionID string `json:"subscription_id"`
			Change         string `json:"change"`
			Rejected       bool   `json:"rejected"`
			Errors         []struct {
				Field  string `json:"field"`
				Reason string `json:"reason"`
			} `json:"errors"`
			Error string `json:"error"`
		}
		request := func(body string) reply {
			t.Helper()
			m, err := nc.Request(event.SubjectIngest, []byte(body), 10*time.Second)
			if err != nil {
				t.Fatalf("request on %s: %v", event.SubjectIngest, err)
			}
			if bytes.Contains(m.Data, []byte(`"Field"`)) || bytes.Contains(m.Data, []byte(`"Reason"`)) {
				t.Errorf("ingest reply's errors not named field and reason, as in an import report: %s", m.Data)
			}
			var r reply
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatalf("ingest reply: %v: %s", err, m.Data)
			}
			return r
		}
		if r := request(apiIngest); r.SubscriptionID != "130000000009" || r.Change != "created" || r.Rejected || r.Error != "" {
			t.Errorf("ingest reply %+v, want 130000000009 created", r)
		}
		events.expect(t, "ingest", upsert{"130000000009", "created", false})
		var rec map[string]any
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/130000000009", nil, &rec); code != http.StatusOK || rec["cm_email"] != "ivy@iota.example" {
			t.Errorf("GET the ingested record: %d %v", code, rec)
		}
		if r := request(apiIngest); r.Change != "unchanged" {
			t.Errorf("ingest of the same record: %+v, want unchanged", r)
		}

		r := request(apiIngestBad)
		var got []string
		for _, e := range r.Errors {
			if e.Reason == "" {
				t.Errorf("ingest rejection of %s has no reason: %+v", e.Field, r)
			}
			got = append(got, e.Field)
		}
		if !r.Rejected || r.Change != "" || !reflect.DeepEqual(got, []string{"end_date", "cm_email"}) {
			t.Errorf("ingest of a bad record: %+v, want rejected with end_date and cm_email", r)
		}
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/130000000010", nil, nil); code != http.StatusNotFound {
			t.Errorf("GET the rejected record: %d, want 404", code)
		}
		// The unchanged and the rejected record published nothing: the
		// next event is this one's.
		if code, _ := send(t, s, http.MethodPost, "/api/v1/subscriptions/import", "application/x-ndjson",
			`{"subscription_id":"130000000012","end_date":"2027-12-31"}`); code != http.StatusOK {
			t.Fatalf("import the marker: %d", code)
		}
		events.expect(t, "marker after the unchanged and rejected ingest", upsert{"130000000012", "created", false})
	})

	t.Run("preview", func(t *testing.T) {
		var p map[string]string
		if code := s.API(t, http.MethodPost, "/api/v1/preview", map[string]any{"subscription_id": "130000000009", "milestone": 45}, &p); code != http.StatusOK {
			t.Fatalf("preview: %d %v", code, p)
		}
		if p["notice_key"] != "130000000009:2027-09-30:45" {
			t.Errorf("preview notice_key %q", p["notice_key"])
		}
		for _, part := range []string{"subject", "text", "html"} {
			if !strings.Contains(p[part], "130000000009") {
				t.Errorf("preview %s does not name the subscription: %q", part, p[part])
			}
		}
		if !strings.Contains(p["html"], "<html") {
			t.Errorf("preview html is not HTML: %.80q", p["html"])
		}
		code, raw := send(t, s, http.MethodPost, "/api/v1/preview", "application/json", `{"subscription_id":"139999999999","milestone":45}`)
		apiError(t, "preview of an unknown subscription", code, raw, http.StatusNotFound, "not_found")
		code, raw = send(t, s, http.MethodPost, "/api/v1/preview", "application/json", `{"subscription_id":"130000000009"}`)
		apiError(t, "preview without a milestone", code, raw, http.StatusBadRequest, "invalid")
	})

	t.Run("errors", func(t *testing.T) {
		code, raw := send(t, s, http.MethodGet, "/api/v1/forecast?days=0", "", "")
		if msg := apiError(t, "forecast days=0", code, raw, http.StatusBadRequest, "invalid"); !strings.Contains(msg, "1 to 366") {
			t.Errorf("forecast days=0 does not say what to give: %q", msg)
		}
		code, raw = send(t, s, http.MethodGet, "/api/v1/subscriptions/139999999999", "", "")
		apiError(t, "GET unknown", code, raw, http.StatusNotFound, "not_found")
		code, raw = send(t, s, http.MethodDelete, "/api/v1/subscriptions/139999999999", "", "")
		apiError(t, "DELETE unknown", code, raw, http.StatusNotFound, "not_found")
		code, raw = send(t, s, http.MethodGet, "/api/v1/subscriptions/a%20b", "", "")
		apiError(t, "GET an impossible id", code, raw, http.StatusBadRequest, "invalid")
		code, raw = send(t, s, http.MethodPost, "/api/v1/preview", "application/json", `{"subscription_id":"a b","milestone":45}`)
		apiError(t, "preview of an impossible id", code, raw, http.StatusBadRequest, "invalid")
		code, raw = send(t, s, http.MethodGet, "/api/v1/nothing", "", "")
		apiError(t, "unknown endpoint", code, raw, http.StatusNotFound, "not_found")
		code, raw = send(t, s, http.MethodPost, "/api/v1/scheduler/run", "application/json", `{"as_of":"01/12/2026"}`)
		apiError(t, "run with a bad date", code, raw, http.StatusBadRequest, "invalid")

		req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/subscriptions/130000000001", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		apiError(t, "no token", resp.StatusCode, b.Bytes(), http.StatusUnauthorized, "unauthorized")
	})

	t.Run("CLI", func(t *testing.T) {
		dir := t.TempDir()
		write := func(name, data string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}
		// Rows rejected: exit 1, with the report on stdout.
		r := s.CLI(t, "import", write("rows.csv", apiCSV))
		if r.Code != 1 || !strings.HasPrefix(r.Stdout, "5 rows: 0 created, 2 updated, 1 unchanged, 2 rejected\n") ||
			!strings.Contains(r.Stdout, `line 6: cm_email: "not-an-email"`) {
			t.Errorf("import with rejected rows: exit %d, want 1\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		// The file rejected as a whole: exit 1, the reason on stderr.
		r = s.CLI(t, "import", write("nocol.csv", "subscription_id,expiry\n130000000011,2027-01-31\n"))
		if r.Code != 1 || !strings.Contains(r.Stderr, "end_date") {
			t.Errorf("import without end_date: exit %d, want 1 naming the column\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		down := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		for _, c := range []struct {
			what string
			args []string
			want string
		}{
			{"missing file", []string{"import", filepath.Join(dir, "nope.csv")}, "does not exist: check the path"},
			{"wrong extension", []string{"import", write("subs.dat", "x")}, "name the file .csv, .xlsx, .json (an array) or .ndjson"},
			{"an old workbook", []string{"import", write("subs.xls", "x")}, ".xls workbooks cannot be imported: save it as an Excel Workbook (.xlsx)"},
			{"a directory", []string{"import", dir}, "is a directory"},
			{"server down", []string{"import", "--server", down, filepath.Join(dir, "rows.csv")}, "cannot reach the server at " + down + ": start it with `renewals serve`"},
			{"no URL", []string{"import", "--server", "127.0.0.1:1", filepath.Join(dir, "rows.csv")}, "give one such as http://127.0.0.1:8080"},
			{"no file", []string{"import"}, "see 'renewals import --help'"},
			{"unknown flag", []string{"import", "--nope", "x.csv"}, "see 'renewals import --help'"},
		} {
			r := s.CLI(t, c.args...)
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if r.Code != 2 || len(lines) != 1 || !strings.Contains(r.Stderr, c.want) || r.Stdout != "" {
				t.Errorf("import, %s: exit %d, stderr %q: want exit 2 and one line saying %q", c.what, r.Code, r.Stderr, c.want)
			}
		}
		for _, cmd := range []string{"import", "run", "forecast", "notices", "calllist", "erase"} {
			r := s.CLI(t, cmd, "--help")
			if r.Code != 0 || !strings.HasPrefix(r.Stdout, "Usage: renewals "+cmd) || !strings.Contains(r.Stdout, "-server") || r.Stderr != "" {
				t.Errorf("%s --help: exit %d\n%s%s", cmd, r.Code, r.Stdout, r.Stderr)
			}
		}
		if r := s.CLI(t, "--help"); r.Code != 0 || !strings.Contains(r.Stdout, "renewals import FILE") {
			t.Errorf("--help: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}

		// A file over 4 MB reports progress on stderr; a small one does
		// not. The bulk of the big one is an ignored column, so that it
		// holds only 1,500 rows.
		var big strings.Builder
		big.WriteString("subscription_id,end_date,notes\n")
		pad := strings.Repeat("n", 3000)
		for i := range 1500 {
			big.WriteString("14" + strconv.Itoa(1000000000+i) + ",2027-10-31," + pad + "\n")
		}
		r = s.CLI(t, "import", write("big.csv", big.String()))
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "1500 rows: 1500 created") ||
			!strings.Contains(r.Stderr, "importing ") || !strings.Contains(r.Stderr, "sent 4.3 MB of 4.3 MB (100%)") {
			t.Errorf("import of a 4.3 MB file: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
		}
		if r = s.CLI(t, "import", filepath.Join(dir, "rows.csv")); strings.Contains(r.Stderr, "sent") {
			t.Errorf("import of a small file shows progress: %q", r.Stderr)
		}
		if r = s.CLI(t, "import", "--quiet", filepath.Join(dir, "big.csv")); r.Code != 0 || r.Stderr != "" {
			t.Errorf("import --quiet: exit %d, stderr %q", r.Code, r.Stderr)
		}
	})
}

// TestImportTooLarge holds a server with --max-import-bytes 2000 to its
// limit: the API answers 413 too_large, and the CLI says what to do.
func TestImportTooLarge(t *testing.T) {
	t.Parallel()
	s := e2e.Start(t, e2e.Options{Args: []string{"--max-import-bytes", "2000", "--target", "api"}})
	var body strings.Builder
	body.WriteString("subscription_id,end_date\n")
	for i := range 100 {
		body.WriteString("15" + strconv.Itoa(1000000000+i) + ",2027-01-31\n")
	}
	code, raw := send(t, s, http.MethodPost, "/api/v1/subscriptions/import", "text/csv", body.String())
	if msg := apiError(t, "import over the limit", code, raw, http.StatusRequestEntityTooLarge, "too_large"); !strings.Contains(msg, "--max-import-bytes") {
		t.Errorf("413 does not say what to do: %q", msg)
	}
	path := filepath.Join(t.TempDir(), "big.csv")
	if err := os.WriteFile(path, []byte(body.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.CLI(t, "import", path)
	if r.Code != 2 || !strings.Contains(r.Stderr, "larger than 2000 bytes") {
		t.Errorf("CLI import over the limit: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// Under the limit, it imports.
	small := "subscription_id,end_date\n151000000000,2027-01-31\n"
	code, raw = send(t, s, http.MethodPost, "/api/v1/subscriptions/import", "text/csv", small)
	if code != http.StatusOK {
		t.Errorf("import under the limit: %d %s", code, raw)
	}
}
