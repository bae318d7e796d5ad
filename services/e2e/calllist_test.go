package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/calllist"
)

// row is one subscription of a test portfolio, written as an import CSV row.
type row struct {
	id, customer, product   string
	end                     subscription.Date
	seats, assigned         string
	status                  string
	cmName, cmEmail, cmTel  string
	paName, paEmail, saMail string
	rep                     string
}

const portfolioHeader = "subscription_id,customer_account,customer_name,product,seats,seats_assigned,access_model,end_date,status,cm_name,cm_email,cm_phone,pa_name,pa_email,sa_emails,reseller_rep\n"

func writePortfolio(t *testing.T, rows []row) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(portfolioHeader)
	for _, r := range rows {
		fmt.Fprintf(&b, "%s,ACC-%s,%s,%s,%s,%s,single-user,%s,%s,%s,%s,%s,%s,%s,%s,%s\n",
			r.id, r.id, r.customer, r.product, r.seats, r.assigned, r.end, r.status,
			r.cmName, r.cmEmail, r.cmTel, r.paName, r.paEmail, r.saMail, r.rep)
	}
	path := filepath.Join(t.TempDir(), "portfolio.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// personal returns every piece of personal data in rows.
func personal(rows []row) []string {
	var out []string
	for _, r := range rows {
		for _, v := range []string{r.cmName, r.cmEmail, r.cmTel, r.paName, r.paEmail, r.saMail} {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// scenario is the portfolio of the call list test, relative to today: each
// case the list must rank, and some it must leave out.
func scenario(today subscription.Date) []row {
	return []row{
		// On the list, in this order.
		{id: "200000000001", customer: "Nomail Ltd", product: "Revit", end: today.AddDays(40), seats: "5", assigned: "5", status: "active",
			paName: "Pat Admin", paEmail: "pat.admin@nomail.example", rep: "Sam"},
		{id: "200000000002", customer: "Bounce plc", product: "AutoCAD", end: today.AddDays(44), seats: "3", assigned: "3", status: "active",
			cmName: "Bea Bounce", cmEmail: "bea.bounce@bounce.example", cmTel: "+44 1254 000202", rep: "Jo"},
		{id: "200000000003", customer: "Lapsed Ltd", product: "Maya", end: today.AddDays(-5), seats: "2", assigned: "1", status: "active",
			cmName: "Len Lapse", cmEmail: "len.lapse@lapsed.example", cmTel: "+44 1254 000203", rep: "Jo"},
		{id: "200000000004", customer: "Seats Ltd", product: "Inventor", end: today.AddDays(12), seats: "10", assigned: "7", status: "active",
			cmName: "Sue Seats", cmEmail: "sue.seats@seats.example", cmTel: "+44 1254 000204", rep: "Sam"},
		{id: "200000000005", customer: "Later Ltd", product: "Fusion", end: today.AddDays(60), seats: "4", assigned: "4", status: "active",
			cmName: "Lou Later", cmEmail: "lou.later@later.example", cmTel: "+44 1254 000205", rep: "Sam"},
		// Off the list.
		{id: "200000000006", customer: "Renewing Ltd", product: "Civil 3D", end: today.AddDays(20), seats: "1", assigned: "1", status: "renewal_in_progress",
			cmName: "Rae Renew", cmEmail: "rae.renew@renewing.example", cmTel: "+44 1254 000206", rep: "Jo"},
		{id: "200000000007", customer: "Cancelled Ltd", product: "3ds Max", end: today.AddDays(30), seats: "1", assigned: "1", status: "cancelled",
			cmName: "Cal Cancel", cmEmail: "cal.cancel@cancelled.example", cmTel: "+44 1254 000207", rep: "Jo"},
		{id: "200000000008", customer: "Far Ltd", product: "Revit", end: today.AddDays(200), seats: "1", assigned: "1", status: "active",
			cmName: "Fay Far", cmEmail: "fay.far@far.example", cmTel: "+44 1254 000208", rep: "Jo"},
		{id: "200000000009", customer: "Gone Ltd", product: "Revit", end: today.AddDays(-40), seats: "1", assigned: "1", status: "active",
			cmName: "Gil Gone", cmEmail: "gil.gone@gone.example", cmTel: "+44 1254 000209", rep: "Jo"},
	}
}

const bouncedAddress = "bea.bounce@bounce.example"

// want is an expected call-list line.
type want struct {
	id, category, reason string
	daysLeft             int
}

func expectedList(r string) []want {
	return []want{
		{"200000000001", "unreachable", "no contract manager email", 40},
		{"200000000002", "unreachable", r, 44},
		{"200000000003", "lapsed", "lapsed 5 days ago", -5},
		{"200000000004", "expiring", "expires in 12 days; 3 of 10 seats unused", 12},
		{"200000000005", "expiring", "expires in 60 days", 60},
	}
}

type listAnswer struct {
	Count   int              `json:"count"`
	Entries []calllist.Entry `json:"entries"`
}

func getList(t *testing.T, s *Server, query string) listAnswer {
	t.Helper()
	var out listAnswer
	if code := s.API(t, http.MethodGet, "/api/v1/calllist?"+query, nil, &out); code != http.StatusOK {
		t.Fatalf("GET /api/v1/calllist?%s: %d", query, code)
	}
	return out
}

// TestCalllistOrderAndReasons runs the whole service against an SMTP server
// that rejects one contract manager with 550, and checks that the call list
// ranks what email cannot reach first, then the lapsed, then by days left,
// each with its reason, in JSON and in CSV, and leaves out the renewing,
// cancelled, far-off and long-lapsed subscriptions.
func TestCalllistOrderAndReasons(t *testing.T) {
	smtp := testenv.SMTP(t)
	smtp.Inject(testenv.Fault{Rcpt: bouncedAddress, Stage: testenv.StageRcpt, Code: 550})
	s := Start(t, Options{Env: map[string]string{"RENEWALS_SMTP_URL": smtp.URL()}})
	today := subscription.Today(time.Now(), time.UTC)
	rows := scenario(today)
	if r := s.CLI(t, "import", writePortfolio(t, rows)); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.CLI(t, "run", "--as-of", today.String(), "--wait"); r.Code != 0 {
		t.Fatalf("run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	asOf := "as_of=" + today.String()

	// The calllist target follows the outcomes asynchronously: wait until
	// the three notices that went out (or not) show.
	var got listAnswer
	testenv.Eventually(t, 10*time.Second, "the call list to show the notice outcomes", func() bool {
		got = getList(t, s, asOf)
		outcomes := 0
		for _, e := range got.Entries {
			if e.LastOutcome != nil {
				outcomes++
			}
		}
		return outcomes == 4 // 40 and 44 days: 45-day; 12 days: 30-day; 60 days: 90-day
	})
	var failReason string
	for _, e := range got.Entries {
		if e.SubscriptionID == "200000000002" {
			failReason = e.Reason
		}
	}
	if !strings.HasPrefix(failReason, "45-day notice failed: 550") || !strings.Contains(failReason, "mailbox unavailable") {
		t.Fatalf("reason for the 550 = %q, want 45-day notice failed: 550 ... mailbox unavailable", failReason)
	}
	if strings.Contains(failReason, bouncedAddress) {
		t.Fatalf("reason %q holds the address", failReason)
	}
	wants := expectedList(failReason)
	if len(got.Entries) != len(wants) || got.Count != len(wants) {
		t.Fatalf("call list has %d entries (count %d), want %d: %+v", len(got.Entries), got.Count, len(wants), got.Entries)
	}
	for i, w := range wants {
		e := got.Entries[i]
		if e.Rank != i+1 || e.SubscriptionID != w.id || string(e.Category) != w.category || e.Reason != w.reason || e.DaysLeft != w.daysLeft {
			t.Errorf("entry %d = #%d %s %s %q (%d days), want %s %s %q (%d days)",
				i+1, e.Rank, e.SubscriptionID, e.Category, e.Reason, e.DaysLeft, w.id, w.category, w.reason, w.daysLeft)
		}
	}
	// The entries carry what the caller needs, joined from the store.
	seats := got.Entries[3]
	if seats.CMName != "Sue Seats" || seats.CMPhone != "+44 1254 000204" || seats.Customer != "Seats Ltd" ||
		seats.Product != "Inventor" || seats.ResellerRep != "Sam" || seats.SeatsUnused == nil || *seats.SeatsUnused != 3 ||
		len(seats.NoticesSent) != 1 || seats.NoticesSent[0].Milestone != 30 || seats.LastOutcome.Outcome != subscription.OutcomeSent {
		t.Errorf("entry of 200000000004 = %+v", seats)
	}
	if nomail := got.Entries[0]; nomail.LastOutcome == nil || nomail.LastOutcome.Outcome != subscription.OutcomeUndeliverable || len(nomail.NoticesSent) != 0 {
		t.Errorf("entry of 200000000001 = %+v", nomail)
	}

	// Filters.
	ids := func(a listAnswer) string {
		var s []string
		for _, e := range a.Entries {
			s = append(s, e.SubscriptionID[len(e.SubscriptionID)-1:])
		}
		return strings.Join(s, ",")
	}
	for q, want := range map[string]string{
		"reseller_rep=jo":             "2,3",
		"reseller_rep=Sam":            "1,4,5",
		"min_days=0&max_days=44":      "1,2,4",
		"max_days=-1":                 "3",
		"reseller_rep=Sam&min_days=1": "1,4,5",
		"reseller_rep=Nobody":         "",
	} {
		if got := ids(getList(t, s, asOf+"&"+q)); got != want {
			t.Errorf("?%s: entries %q, want %q", q, got, want)
		}
	}
	if resp, _ := s.Get(t, "/api/v1/calllist?min_days=soon"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("min_days=soon: %d, want 400", resp.StatusCode)
	}

	// CSV: a BOM, CRLF line ends, a header row, the same order and reasons.
	resp, body := s.Get(t, "/api/v1/calllist?format=csv&"+asOf)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type = %q", ct)
	}
	checkCSV(t, body, wants)

	// The same run, counted on /metrics (no token).
	mresp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, line := range []string{
		`renewals_notices_due_total{milestone="45"} 2`,
		`renewals_notices_due_total{milestone="30"} 1`,
		`renewals_notices_due_total{milestone="90"} 1`,
		`renewals_notices_total{milestone="45",outcome="undeliverable"} 1`,
		`renewals_notices_total{milestone="45",outcome="failed"} 1`,
		`renewals_notices_total{milestone="30",outcome="sent"} 1`,
		`renewals_notices_total{milestone="90",outcome="sent"} 1`,
		`renewals_import_rows_total{result="created"} 9`,
		`renewals_notifier_consumer_pending{consumer="notifier"} 0`,
		`renewals_notifier_consumer_redelivered{consumer="notifier"} 0`,
		`renewals_notice_send_seconds_count `,
		`renewals_scheduler_pass_duration_seconds_count `,
		`renewals_scheduler_last_success_timestamp_seconds `,
	} {
		if !strings.Contains(string(metrics), "\n"+line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	// The CLI prints the same CSV.
	r := s.CLI(t, "calllist", "--format", "csv")
	if r.Code != 0 {
		t.Fatalf("renewals calllist: %d %s", r.Code, r.Stderr)
	}
	if !strings.HasPrefix(r.Stdout, "\uFEFFrank,category,reason,") {
		t.Errorf("renewals calllist --format csv starts %q", r.Stdout[:min(40, len(r.Stdout))])
	}
}

func checkCSV(t *testing.T, body []byte, wants []want) {
	t.Helper()
	if !bytes.HasPrefix(body, []byte("\xEF\xBB\xBF")) {
		t.Fatalf("CSV does not start with a UTF-8 BOM: %q", body[:min(10, len(body))])
	}
	body = body[3:]
	if n, crlf := bytes.Count(body, []byte("\n")), bytes.Count(body, []byte("\r\n")); n != crlf || n != len(wants)+1 {
		t.Fatalf("CSV has %d line ends, %d of them CRLF; want %d, all CRLF", n, crlf, len(wants)+1)
	}
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != strings.Join(calllist.CSVHeader, ",") {
		t.Fatalf("CSV header = %v", recs[0])
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for i, w := range wants {
		rec := recs[i+1]
		if rec[col["rank"]] != fmt.Sprint(i+1) || rec[col["subscription_id"]] != w.id || rec[col["category"]] != w.category ||
			rec[col["reason"]] != w.reason || rec[col["days_left"]] != fmt.Sprint(w.daysLeft) {
			t.Errorf("CSV row %d = %v, want %v", i+1, rec, w)
		}
	}
	// A phone number starting with + is written as it is, without an
	// apostrophe in front: it holds nothing a formula could run.
	if got := recs[2][col["contract_manager_phone"]]; got != "+44 1254 000202" {
		t.Errorf("CSV phone = %q, want +44 1254 000202", got)
	}
}

// TestCalllistRebuildsAfterCrash runs the calllist target on its own, in
// process, against a test-owned NATS and Redis, while a server without it
// fills the stream. The target is stopped dead mid-stream (its connection
// closed between saving an event's state and acknowledging it), the
// portfolio changes meanwhile, and a restarted target must produce the same
// list as one that ran without a break; so must a target whose state bucket
// was lost, replaying the stream from the start.
func TestCalllistRebuildsAfterCrash(t *testing.T) {
	ns := testenv.NATS(t)
	rd := testenv.StartRedis(t)
	s := Start(t, Options{
		Env:  map[string]string{"RENEWALS_NATS_URL": ns.ClientURL(), "RENEWALS_REDIS_URL": rd.URL},
		Args: []string{"--target", "api,scheduler,notifier"},
	})
	today := subscription.Today(time.Now(), time.UTC)
	var rows []row
	for i := range 60 {
		r := row{
			id: fmt.Sprintf("3000000%05d", i), customer: fmt.Sprintf("Customer %d", i), product: "Revit",
			end: today.AddDays(i*2 - 35), seats: "10", assigned: fmt.Sprint(i % 11), status: "active",
			cmName: fmt.Sprintf("Cm Person%d", i), cmEmail: fmt.Sprintf("cm%d@c%d.example", i, i), cmTel: fmt.Sprintf("+44 1254 %06d", i),
			rep: []string{"Sam", "Jo"}[i%2],
		}
		switch i % 7 {
		case 3:
			r.cmEmail = ""
		case 5:
			r.status = "renewal_in_progress"
		}
		rows = append(rows, r)
	}
	if r := s.CLI(t, "import", writePortfolio(t, rows)); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.CLI(t, "run", "--as-of", today.String(), "--wait"); r.Code != 0 {
		t.Fatalf("run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}

	ctx := context.Background()
	store, _, err := redisstore.Open(ctx, rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	// The server's rules: the default milestones, grace and post-expiry stages.
	stages, err := subscription.ParsePostExpiry(subscription.DefaultPostExpiry)
	if err != nil {
		t.Fatal(err)
	}
	rules := calllist.Rules{Milestones: subscription.DefaultMilestones, GraceDays: 30, Location: time.UTC, PostExpiry: stages}
	connect := func() (*nats.Conn, jetstream.JetStream) { return testenv.Connect(t, ns.ClientURL()) }
	_, js := connect()
	start := func(tg *calllist.Target) (stop func() error) {
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- tg.Run(tctx) }()
		return func() error { cancel(); return <-done }
	}
	newTarget := func(js jetstream.JetStream, bucket, durable string) *calllist.Target {
		return &calllist.Target{JS: js, Store: store, Rules: rules, Now: time.Now, Log: zap.NewNop(),
			Bucket: bucket, Durable: durable, AckWait: time.Second}
	}
	// drained waits until the consumer durable, created at since or later,
	// has applied every event.
	drained := func(durable string, since time.Time) {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, durable+" to apply every event", func() bool {
			c, err := js.Consumer(ctx, event.StreamName, durable)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && !info.Created.Before(since) && info.NumPending == 0 && info.NumAckPending == 0
		})
	}
	began := time.Now()

	// The reference: one target that never stops, under other names.
	stopRef := start(newTarget(js, "calllist_ref", "calllist_ref"))
	t.Cleanup(func() { _ = stopRef() })

	// The target under test dies at its 40th event, before acknowledging it.
	ncCrash, jsCrash := connect()
	crashing := newTarget(jsCrash, "", "")
	applied := 0
	crashing.AfterApply = func(uint64) {
		if applied++; applied == 40 {
			ncCrash.Close()
		}
	}
	crashed := make(chan error, 1)
	go func() { crashed <- crashing.Run(ctx) }()
	select {
	case err := <-crashed:
		if err == nil {
			t.Fatal("the crashed target's Run returned no error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the target did not stop when its connection was closed")
	}
	info := consumerInfo(t, js, calllist.Durable)
	if info.NumPending == 0 {
		t.Fatalf("the target was not stopped mid-stream: nothing left to deliver (%+v)", info)
	}

	// The portfolio changes while the target is down.
	if code := s.API(t, http.MethodDelete, "/api/v1/subscriptions/"+rows[20].id, nil, nil); code != http.StatusOK {
		t.Fatalf("erase: %d", code)
	}
	changed := rows[22]
	changed.status = "renewal_in_progress"
	renewed := rows[24]
	renewed.end = today.AddDays(400)
	if r := s.CLI(t, "import", writePortfolio(t, []row{changed, renewed})); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}

	// Restarted, it resumes and catches up.
	_, jsAgain := connect()
	stopAgain := start(newTarget(jsAgain, "", ""))
	drained(calllist.Durable, began)
	drained("calllist_ref", began)
	ref := &calllist.Lister{JS: js, Store: store, Rules: rules, Now: time.Now, Bucket: "calllist_ref"}
	want, err := ref.List(ctx, today, calllist.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 20 {
		t.Fatalf("the reference list has only %d entries", len(want))
	}
	got := getList(t, s, "as_of="+today.String())
	sameList(t, "after the restart", got.Entries, want)

	// State lost: a fresh target replays the stream from the start.
	if err := stopAgain(); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, calllist.Bucket); err != nil {
		t.Fatal(err)
	}
	replayed := time.Now()
	stopFresh := start(newTarget(js, "", ""))
	t.Cleanup(func() { _ = stopFresh() })
	drained(calllist.Durable, replayed)
	fresh := &calllist.Lister{JS: js, Store: store, Rules: rules, Now: time.Now}
	testenv.Eventually(t, 10*time.Second, "the replayed list", func() bool {
		l, err := fresh.List(ctx, today, calllist.Filter{})
		return err == nil && len(l) == len(want)
	})
	rebuilt, err := fresh.List(ctx, today, calllist.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	sameList(t, "after replaying from the start", rebuilt, want)
}

func consumerInfo(t *testing.T, js jetstream.JetStream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(context.Background(), event.StreamName, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func sameList(t *testing.T, when string, got, want []calllist.Entry) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", " ")
	w, _ := json.MarshalIndent(want, "", " ")
	if !bytes.Equal(g, w) {
		t.Fatalf("%s the list differs from the reference:\ngot  %s\nwant %s", when, g, w)
	}
}
