package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"renewals/pkg/subscription"
)

var update = flag.Bool("update", false, "rewrite the golden *.report.json files in testdata")

// memStore is an in-memory Upserter with the store's contract: by id, in
// order, a repeat within a batch reported against the state the earlier left.
// Import may call it from several goroutines at once.
type memStore struct {
	mu    sync.Mutex
	subs  map[string]subscription.Subscription
	calls int
}

func (m *memStore) Upsert(_ context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subs == nil {
		m.subs = map[string]subscription.Subscription{}
	}
	m.calls++
	res := make([]subscription.UpsertResult, len(subs))
	for i, s := range subs {
		old, ok := m.subs[s.ID]
		switch {
		case !ok:
			res[i] = subscription.UpsertResult{Change: subscription.Created}
		case subscription.Equal(old, s):
			res[i] = subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: old.EndDate}
		default:
			res[i] = subscription.UpsertResult{Change: subscription.Updated, PreviousEndDate: old.EndDate}
		}
		m.subs[s.ID] = s
	}
	return res, nil
}

func importFile(t *testing.T, name string, opts Options) (Report, *memStore, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st := &memStore{}
	opts.Store = st
	rep, err := Import(context.Background(), f, opts)
	return rep, st, err
}

// checkGolden compares the report's JSON with testdata/<name>.report.json.
func checkGolden(t *testing.T, name string, rep Report) {
	t.Helper()
	got, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".report.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("report of %s:\n%s\nwant (%s):\n%s", name, got, path, want)
	}
}

func TestImportFixtures(t *testing.T) {
	for _, name := range []string{"basic.csv", "invalid.csv", "long_row.csv", "subs.json", "subs.ndjson"} {
		t.Run(name, func(t *testing.T) {
			rep, st, err := importFile(t, name, Options{})
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			checkGolden(t, name, rep)
			if got, want := rep.Created+rep.Updated+rep.Unchanged+rep.Rejected, rep.Rows; got != want {
				t.Errorf("counts add up to %d, want rows %d", got, want)
			}
			if got, want := len(st.subs), rep.Created; got != want {
				t.Errorf("store holds %d subscriptions, report says %d created", got, want)
			}
		})
	}
}

func TestImportBasicStoresLastRow(t *testing.T) {
	rep, st, err := importFile(t, "basic.csv", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.Text(), `7 rows: 3 created, 1 updated, 1 unchanged, 2 rejected
line 3: cm_name: contains a line break: put the value on one line, without control characters
line 6: customer_name: contains a line break: put the value on one line, without control characters
ignored unknown columns: notes, region
subscription 110001 is on lines 2, 9, 12: the last one wins
`; got != want {
		t.Errorf("Text():\n%s\nwant:\n%s", got, want)
	}
	seats, assigned := 25, 25
	want := subscription.Subscription{
		ID: "110001", EndDate: subscription.MustDate("2028-05-31"), CustomerAccount: "ACC-1",
		CustomerName: "Acme, Inc.", Product: "CAD Pro", Seats: &seats, SeatsAssigned: &assigned,
		AccessModel: subscription.MultiUser, Term: "12 months", StartDate: subscription.MustDate("2027-06-01"),
		Status: subscription.StatusActive, Timezone: "Europe/London", Locale: "en-GB", ResellerRep: "Sam Rep",
		ContractManager: subscription.Contact{Name: "Zoë Müller", Email: "zoe@acme.example", Phone: "+44 20 7946 0000"},
		PrimaryAdmin:    subscription.Contact{Name: "Pat Admin", Email: "pat@acme.example"},
	}
	if got := st.subs["110001"]; !subscription.Equal(got, want) {
		t.Errorf("stored 110001 = %+v\nwant %+v", got, want)
	}
	s2 := st.subs["110002"]
	if s2.CustomerName != `Widgets "R" Us` || s2.Status != subscription.StatusCancelled || s2.ContractManager.Name != "Li Wei" {
		t.Errorf("stored 110002 = %+v", s2)
	}
	if s4 := st.subs["110004"]; s4.CustomerName != "短い名前" || s4.Seats == nil || *s4.Seats != 0 || s4.Status != subscription.StatusActive {
		t.Errorf("stored 110004 = %+v", s4)
	}
}

func TestImportFirstRowOfDuplicateKeepsSecondaryAdmins(t *testing.T) {
	// The first 110001 row names two secondary admins; they are split on ';'.
	sub, errs := Validate(map[string]string{"subscription_id": "1", "end_date": "2027-01-01", "sa_emails": " a1@acme.example; a2@acme.example ;"})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := strings.Join(sub.SecondaryAdmins, "|"); got != "a1@acme.example|a2@acme.example" {
		t.Errorf("SecondaryAdmins = %q", got)
	}
}

func TestImportInvalidText(t *testing.T) {
	rep, st, err := importFile(t, "invalid.csv", Options{})
	if err != nil {
		t.Fatal(err)
	}
	text := rep.Text()
	for _, want := range []string{
		"22 rows: 4 created, 0 updated, 0 unchanged, 18 rejected\n",
		"line 9: start_date: \"2026/06/01\" is not a date: use YYYY-MM-DD, e.g. 2027-05-31\n",
		"dates with slashes read as DD/MM/YYYY\n",
		"line 7: seats: \"-1\" is not a number of seats",
		"line 7: seats_assigned: \"ten\" is not a number of seats",
		"line 19: cm_phone: contains a line break",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Text() lacks %q:\n%s", want, text)
		}
	}
	if s := st.subs["200019"]; s.Timezone != "UTC" || s.Locale != "fr" || len(s.SecondaryAdmins) != 2 ||
		s.ContractManager.Email != "cm@x.example" || s.PrimaryAdmin.Email != "pa@x.example" ||
		s.AccessModel != subscription.SingleUser || *s.Seats != 3 || *s.SeatsAssigned != 1 {
		t.Errorf("stored 200019 = %+v", s)
	}
	// 31/05/2027 can only be day first; the vendor's "expired" is active.
	if s := st.subs["200001"]; s.EndDate != subscription.MustDate("2027-05-31") {
		t.Errorf("stored 200001 = %+v, want the end date read day first", s)
	}
	if s := st.subs["200009"]; s.Status != subscription.StatusActive {
		t.Errorf("stored 200009 = %+v, want expired read as active", s)
	}
}

func TestImportMissingColumn(t *testing.T) {
	rep, st, err := importFile(t, "missing_column.csv", Options{})
	if !errors.Is(err, ErrInvalidFile) {
		t.Fatalf("err = %v, want ErrInvalidFile", err)
	}
	if got, want := err.Error(), "missing required column end_date: the header row must name subscription_id and end_date (or the vendor's Subscription ID and End Date); rename the columns in the file, or give a column map: renewals import --map FILE"; got != want {
		t.Errorf("err = %q\nwant %q", got, want)
	}
	if rep.Rows != 0 || st.calls != 0 {
		t.Errorf("rows %d, store calls %d; want nothing read or stored", rep.Rows, st.calls)
	}
}

func TestImportFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		format   Format
		want     string
	}{
		{"empty", "", FormatAuto, "the file is empty: the first line must be a header row"},
		{"both columns", "id,date\n", FormatAuto, "missing required columns subscription_id, end_date:"},
		{"repeated column", "subscription_id,end_date,End_Date\n", FormatAuto, "line 1: column end_date appears twice"},
		{"header quote", "subscription_id,\"end_date\n", FormatAuto, "line 1: header row: a quoted field is not closed"},
		{"json object", `{"a":1}`, FormatJSON, "line 1: the JSON document is not an array"},
		{"json broken", "[\n{\"subscription_id\":\"1\",\"end_date\":\"2027-01-01\"},\n{\"x\" 1}]", FormatAuto, "line 3: invalid JSON"},
		{"json cut short", "[\n{\"subscription_id\":\"1\",\"end_date\":\"2027-01-01\"},\n", FormatAuto, "the JSON array ends early"},
		{"json unclosed", "[\n{\"subscription_id\":\"1\",\"end_date\":\"2027-01-01\"}\n", FormatAuto, "the JSON array ends early"},
		{"json trailing", "[]\n[]", FormatAuto, "line 2: there is more after the JSON array"},
		{"json empty", "  ", FormatJSON, "the file is empty: give a JSON array"},
		{"bad format", "", "xml", `"xml" is not an import format`},
		{"long header", "subscription_id,end_date," + strings.Repeat("x", MaxRowBytes) + "\n1,2027-01-01\n", FormatAuto, "line 1: the header row is longer than the limit of 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{}
			_, err := Import(context.Background(), strings.NewReader(tc.in), Options{Store: st, Format: tc.format})
			if !errors.Is(err, ErrInvalidFile) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrInvalidFile containing %q", err, tc.want)
			}
		})
	}
}

func TestImportBrokenJSONKeepsEarlierRows(t *testing.T) {
	st := &memStore{}
	in := "[\n{\"subscription_id\":\"1\",\"end_date\":\"2027-01-01\"},\n{\"x\" 1}]"
	rep, err := Import(context.Background(), strings.NewReader(in), Options{Store: st})
	if err == nil || rep.Created != 1 || len(st.subs) != 1 {
		t.Errorf("err %v, report %+v, stored %d; want the error and the first row stored", err, rep, len(st.subs))
	}
}

func TestImportTooLarge(t *testing.T) {
	var csvBody, ndjson, jsonBody strings.Builder
	csvBody.WriteString("subscription_id,end_date\n")
	jsonBody.WriteString("[\n")
	for i := range 1000 {
		fmt.Fprintf(&csvBody, "%d,2027-05-31\n", i)
		fmt.Fprintf(&ndjson, "{\"subscription_id\":\"%d\",\"end_date\":\"2027-05-31\"}\n", i)
		fmt.Fprintf(&jsonBody, "{\"subscription_id\":\"%d\",\"end_date\":\"2027-05-31\"},\n", i)
	}
	for _, body := range []string{csvBody.String(), ndjson.String(), jsonBody.String(), "  " + csvBody.String()[:100]} {
		limit := int64(4096)
		if len(body) < 1000 {
			limit = 1 // cut off while sniffing
		}
		r := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(body)), limit)
		st := &memStore{}
		rep, err := Import(context.Background(), r, Options{Store: st})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%.10q: err = %v, want ErrTooLarge", body, err)
		}
		if _, ok := errors.AsType[*http.MaxBytesError](err); !ok {
			t.Errorf("err = %v does not wrap *http.MaxBytesError", err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("limit of %d bytes", limit)) {
			t.Errorf("err = %q does not name the limit", err)
		}
		if rep.Rows != rep.Created || (limit > 1 && rep.Rows == 0) {
			t.Errorf("report %+v: want the rows read before the limit stored", rep)
		}
	}
}

func TestImportLongRows(t *testing.T) {
	long := strings.Repeat("y", MaxRowBytes)
	for _, tc := range []struct {
		name, in string
		format   Format
		line     int
	}{
		{"csv unquoted", "subscription_id,end_date,customer_name\n1,2027-05-31,a\n2,2027-05-31," + long + "\n3,2027-05-31,c\n", FormatCSV, 3},
		{"csv quoted", "subscription_id,end_date,customer_name\r\n1,2027-05-31,a\r\n2,2027-05-31,\"" + long + "\"\"\r\n\"\r\n3,2027-05-31,c\r\n", FormatCSV, 3},
		{"csv at eof", "subscription_id,end_date,customer_name\n1,2027-05-31,a\n3,2027-05-31,c\n2,2027-05-31,\"" + long, FormatCSV, 4},
		{"ndjson", `{"subscription_id":"1","end_date":"2027-05-31"}` + "\n" + `{"subscription_id":"2","end_date":"2027-05-31","customer_name":"` + long + "\"}\n" + `{"subscription_id":"3","end_date":"2027-05-31"}` + "\n", FormatAuto, 2},
		{"json", `[{"subscription_id":"1","end_date":"2027-05-31"},` + "\n" + `{"subscription_id":"2","end_date":"2027-05-31","customer_name":"` + long + "\"},\n" + `{"subscription_id":"3","end_date":"2027-05-31"}]`, FormatAuto, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{}
			rep, err := Import(context.Background(), strings.NewReader(tc.in), Options{Store: st, Format: tc.format})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Created != 2 || rep.Rejected != 1 || len(rep.Rejections) != 1 {
				t.Fatalf("report %+v: want 2 created, 1 rejected", rep)
			}
			x := rep.Rejections[0]
			if x.Line != tc.line || x.Field != "" || !strings.Contains(x.Reason, "longer than the limit of 65536 bytes") {
				t.Errorf("rejection %+v, want line %d over the limit", x, tc.line)
			}
			if tc.name != "ndjson" && x.SubscriptionID != "2" {
				t.Errorf("rejection names subscription %q, want 2", x.SubscriptionID)
			}
		})
	}
}

func TestReaderLinesAndUnknown(t *testing.T) {
	in := "\xEF\xBB\xBFSUBSCRIPTION_ID , end_date,zeta,alpha,zeta\r\n\"1\",\"2027-01-01\",,,\r\n\r\n\"2\nx\",2027-01-01\r\n3,2027-01-01,a,b,c,d,e\r\n"
	rd, err := NewReader(strings.NewReader(in), FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Format() != FormatCSV {
		t.Errorf("format %q", rd.Format())
	}
	if got := strings.Join(rd.UnknownColumns(), ","); got != "alpha,zeta" {
		t.Errorf("unknown columns %q, want alpha,zeta", got)
	}
	var lines []string
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%d:%q", rec.Line, rec.Fields["subscription_id"]))
	}
	if got, want := strings.Join(lines, " "), `2:"1" 4:"2\nx" 6:"3"`; got != want {
		t.Errorf("records %s, want %s", got, want)
	}
}

func TestSniff(t *testing.T) {
	for in, want := range map[string]Format{
		"  \r\n\t[]":                 FormatJSON,
		"\xEF\xBB\xBF\n{\"a\":1}":    FormatNDJSON,
		"subscription_id,end_date\n": FormatCSV,
	} {
		rd, err := NewReader(strings.NewReader(in), FormatAuto)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if rd.Format() != want {
			t.Errorf("%q sniffed as %q, want %q", in, rd.Format(), want)
		}
	}
}

func TestImportBatchesAndCallbacks(t *testing.T) {
	var body strings.Builder
	body.WriteString("subscription_id,end_date\n")
	for i := range 25 {
		fmt.Fprintf(&body, "%d,2027-05-31\n", i%20)
	}
	st := &memStore{}
	var progress []int
	var upserts []string
	rep, err := Import(context.Background(), strings.NewReader(body.String()), Options{
		Store: st, BatchSize: 10, ProgressEvery: 10,
		Progress: func(n int) { progress = append(progress, n) },
		OnUpsert: func(s subscription.Subscription, r subscription.UpsertResult) {
			upserts = append(upserts, s.ID+"="+string(r.Change))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.calls != 3 {
		t.Errorf("%d Upsert calls, want 3 batches", st.calls)
	}
	if got := fmt.Sprint(progress); got != "[10 20 25]" {
		t.Errorf("progress calls %s, want [10 20 25]", got)
	}
	progress = nil
	if _, err := Import(context.Background(), strings.NewReader("subscription_id,end_date\n1,2027-05-31\n2,2027-05-31\n"), Options{
		Store: st, ProgressEvery: 2, Progress: func(n int) { progress = append(progress, n) },
	}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(progress); got != "[2]" {
		t.Errorf("progress calls %s for 2 rows every 2, want [2]: the end repeats no call", got)
	}
	if rep.Created != 20 || rep.Unchanged != 5 || len(upserts) != 25 || upserts[20] != "0=unchanged" {
		t.Errorf("report %+v, upserts %v", rep, upserts)
	}
	if len(rep.Duplicates) != 5 || fmt.Sprint(rep.Duplicates[0]) != "{0 [2 22]}" {
		t.Errorf("duplicates %v", rep.Duplicates)
	}
}

func TestImportMaxListed(t *testing.T) {
	var body strings.Builder
	body.WriteString("subscription_id,end_date\n")
	for i := range 10 {
		fmt.Fprintf(&body, "%d,bad\n%d,2027-01-01\n%d,2027-01-01\n", i, i, i)
	}
	rep, err := Import(context.Background(), strings.NewReader(body.String()), Options{Store: &memStore{}, MaxListed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rejections) != 3 || rep.RejectionsOmitted != 7 || len(rep.Duplicates) != 3 || rep.DuplicatesOmitted != 7 {
		t.Errorf("report %+v", rep)
	}
	if !strings.Contains(rep.Text(), "... and 7 more rejections not listed\n") {
		t.Errorf("Text():\n%s", rep.Text())
	}
}

func TestImportCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Import(ctx, strings.NewReader("subscription_id,end_date\n1,2027-01-01\n"), Options{Store: &memStore{}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

// overlapStore checks that the batches Import has in flight at once share
// no id, and holds the first batch until the second has begun, so that the
// test fails (by deadlock) unless disjoint batches do overlap.
type overlapStore struct {
	t        *testing.T
	mu       sync.Mutex
	calls    int
	inflight map[string]bool
	second   chan struct{} // closed when the second call begins
	mem      memStore
}

func (o *overlapStore) Upsert(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	o.mu.Lock()
	o.calls++
	call := o.calls
	for _, s := range subs {
		if o.inflight[s.ID] {
			o.t.Errorf("call %d: subscription %s is in a batch still in flight", call, s.ID)
		}
	}
	for _, s := range subs {
		o.inflight[s.ID] = true
	}
	o.mu.Unlock()
	switch call {
	case 1:
		<-o.second
	case 2:
		close(o.second)
	}
	res, err := o.mem.Upsert(ctx, subs)
	o.mu.Lock()
	for _, s := range subs {
		delete(o.inflight, s.ID)
	}
	o.mu.Unlock()
	return res, err
}

func TestImportOverlapsDisjointBatchesOnly(t *testing.T) {
	// Batches of two: {1,2} {3,4} {1,5} {6,7} {5,3} {8,8} {9,10}. The
	// second overlaps the first; the third repeats 1 and waits for both.
	ids := []string{"1", "2", "3", "4", "1", "5", "6", "7", "5", "3", "8", "8", "9", "10"}
	var body strings.Builder
	body.WriteString("subscription_id,end_date\n")
	for i, id := range ids {
		fmt.Fprintf(&body, "%s,2027-05-%02d\n", id, i+1)
	}
	st := &overlapStore{t: t, inflight: map[string]bool{}, second: make(chan struct{})}
	var upserts []string
	rep, err := Import(context.Background(), strings.NewReader(body.String()), Options{
		Store: st, BatchSize: 2,
		OnUpsert: func(s subscription.Subscription, r subscription.UpsertResult) {
			upserts = append(upserts, s.ID+"="+string(r.Change))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "[1=created 2=created 3=created 4=created 1=updated 5=created 6=created 7=created 5=updated 3=updated 8=created 8=updated 9=created 10=created]"
	if got := fmt.Sprint(upserts); got != want {
		t.Errorf("upserts\n got %s\nwant %s", got, want)
	}
	if rep.Created != 10 || rep.Updated != 4 || st.calls != 7 {
		t.Errorf("report %+v after %d calls", rep, st.calls)
	}
	// The last row of each id is what stays.
	for id, day := range map[string]int{"1": 5, "3": 10, "5": 9, "8": 12} {
		if got := st.mem.subs[id].EndDate.Day; got != day {
			t.Errorf("subscription %s ends on day %d, want %d", id, got, day)
		}
	}
}

type failStore struct{}

func (failStore) Upsert(context.Context, []subscription.Subscription) ([]subscription.UpsertResult, error) {
	return nil, errors.New("store down")
}

func TestImportStoreError(t *testing.T) {
	_, err := Import(context.Background(), strings.NewReader("subscription_id,end_date\n1,2027-01-01\n"), Options{Store: failStore{}})
	if err == nil || !strings.Contains(err.Error(), "store down") {
		t.Errorf("err = %v, want the store's error", err)
	}
}

func TestReportJSONEmpty(t *testing.T) {
	rep, err := Import(context.Background(), strings.NewReader("subscription_id,end_date\n"), Options{Store: &memStore{}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	want := `{"rows":0,"created":0,"updated":0,"unchanged":0,"rejected":0,"rejections":[],"rejections_omitted":0,"unknown_columns":[],"duplicates":[],"duplicates_omitted":0,"encoding":"UTF-8"}`
	if string(b) != want {
		t.Errorf("JSON %s\nwant %s", b, want)
	}
	if got := rep.Text(); got != "0 rows: 0 created, 0 updated, 0 unchanged, 0 rejected\n" {
		t.Errorf("Text() = %q", got)
	}
}
