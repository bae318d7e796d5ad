package calllist

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

func intp(n int) *int { return &n }

func TestBuildReasonsAndWindow(t *testing.T) {
	today := subscription.MustDate("2027-01-01")
	r := Rules{Milestones: subscription.DefaultMilestones, GraceDays: 30, Location: time.UTC}
	base := subscription.Subscription{
		ID: "1", Status: subscription.StatusActive, Seats: intp(10), SeatsAssigned: intp(7),
		ContractManager: subscription.Contact{Name: "N", Email: "n@example.com", Phone: "+1"},
	}
	at := func(days int) subscription.Subscription {
		s := base
		s.EndDate = today.AddDays(days)
		return s
	}
	outcome := func(s subscription.Subscription, m int, o subscription.Outcome, reason string, seq uint64) NoticeState {
		return NoticeState{EndDate: s.EndDate, Milestone: m, Outcome: o, Reason: reason, At: time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC), Seq: seq}
	}
	noEmail := at(40)
	noEmail.ContractManager.Email = ""
	full := at(20)
	full.SeatsAssigned = intp(10)
	cancelled := at(20)
	cancelled.Status = subscription.StatusCancelled
	renewing := at(20)
	renewing.Status = subscription.StatusRenewalInProgress
	failedThenSent := at(25)
	renewed := at(25)

	tests := []struct {
		name     string
		sub      subscription.Subscription
		notices  []NoticeState
		on       bool
		category Category
		reason   string
	}{
		{"in the window", at(12), nil, true, Expiring, "expires in 12 days; 3 of 10 seats unused"},
		{"all seats used", full, nil, true, Expiring, "expires in 20 days"},
		{"one day", at(1), nil, true, Expiring, "expires in 1 day; 3 of 10 seats unused"},
		{"end date", at(0), nil, true, Expiring, "expires today; 3 of 10 seats unused"},
		{"window edge", at(90), nil, true, Expiring, "expires in 90 days; 3 of 10 seats unused"},
		{"before the window", at(91), nil, false, "", ""},
		{"lapsed", at(-5), nil, true, Lapsed, "lapsed 5 days ago"},
		{"lapsed a day", at(-1), nil, true, Lapsed, "lapsed 1 day ago"},
		{"grace edge", at(-30), nil, true, Lapsed, "lapsed 30 days ago"},
		{"past grace", at(-31), nil, false, "", ""},
		{"cancelled", cancelled, nil, false, "", ""},
		{"renewal in progress", renewing, nil, false, "", ""},
		{"no email, nothing sent yet", noEmail, nil, true, Unreachable, "no contract manager email"},
		{"undeliverable", noEmail, []NoticeState{outcome(noEmail, 45, subscription.OutcomeUndeliverable, "no contract manager email", 3)},
			true, Unreachable, "no contract manager email"},
		{"failed", at(44), []NoticeState{outcome(at(44), 45, subscription.OutcomeFailed, "550 5.1.1 mailbox unavailable", 3)},
			true, Unreachable, "45-day notice failed: 550 5.1.1 mailbox unavailable"},
		{"failed, then a later notice sent", failedThenSent, []NoticeState{
			outcome(failedThenSent, 45, subscription.OutcomeFailed, "550 x", 3),
			outcome(failedThenSent, 30, subscription.OutcomeSent, "", 9),
		}, true, Expiring, "expires in 25 days; 3 of 10 seats unused"},
		{"failed in the previous term", renewed, []NoticeState{
			{EndDate: renewed.EndDate.AddDays(-365), Milestone: 30, Outcome: subscription.OutcomeFailed, Reason: "550 x", Seq: 4},
		}, true, Expiring, "expires in 25 days; 3 of 10 seats unused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st *State
			if tt.notices != nil {
				st = &State{SubscriptionID: tt.sub.ID, Notices: tt.notices}
			}
			e, on := r.Build(tt.sub, st, today)
			if on != tt.on {
				t.Fatalf("on list = %v, want %v", on, tt.on)
			}
			if !on {
				return
			}
			if e.Category != tt.category || e.Reason != tt.reason {
				t.Fatalf("= %s %q, want %s %q", e.Category, e.Reason, tt.category, tt.reason)
			}
		})
	}

	// Notices sent are listed, largest milestone first, dated in the
	// subscription's zone.
	london := at(25)
	london.Timezone = "Asia/Tokyo"
	st := &State{Notices: []NoticeState{
		outcome(london, 30, subscription.OutcomeSent, "", 7),
		outcome(london, 90, subscription.OutcomeSent, "", 2),
		outcome(london, 45, subscription.OutcomeSkipped, "x", 5),
	}}
	e, _ := r.Build(london, st, today)
	if len(e.NoticesSent) != 2 || e.NoticesSent[0].Milestone != 90 || e.NoticesSent[1].Milestone != 30 ||
		e.NoticesSent[0].Date != subscription.MustDate("2027-01-01") {
		t.Fatalf("notices sent = %+v", e.NoticesSent)
	}
	if e.LastOutcome == nil || e.LastOutcome.Milestone != 30 || e.LastOutcome.Outcome != subscription.OutcomeSent {
		t.Fatalf("last outcome = %+v", e.LastOutcome)
	}
}

func TestSortAndFilter(t *testing.T) {
	es := []Entry{
		{SubscriptionID: "e", Category: Expiring, DaysLeft: 30, ResellerRep: "Jo"},
		{SubscriptionID: "d", Category: Expiring, DaysLeft: 12, ResellerRep: "Sam"},
		{SubscriptionID: "c", Category: Lapsed, DaysLeft: -2, ResellerRep: "Jo"},
		{SubscriptionID: "a", Category: Unreachable, DaysLeft: 60, ResellerRep: "Jo"},
		{SubscriptionID: "b", Category: Unreachable, DaysLeft: 60, ResellerRep: "Sam"},
		{SubscriptionID: "f", Category: Lapsed, DaysLeft: -20, ResellerRep: "Jo"},
	}
	Sort(es)
	var got []string
	for i, e := range es {
		if e.Rank != i+1 {
			t.Fatalf("rank of %s = %d", e.SubscriptionID, e.Rank)
		}
		got = append(got, e.SubscriptionID)
	}
	if g := strings.Join(got, ""); g != "abfcde" {
		t.Fatalf("order = %s, want abfcde", g)
	}
	f := Filter{ResellerRep: "JO", MinDays: intp(-5), MaxDays: intp(30)}
	var kept []string
	for _, e := range es {
		if f.Keep(e) {
			kept = append(kept, e.SubscriptionID)
		}
	}
	if k := strings.Join(kept, ""); k != "ce" {
		t.Fatalf("kept %s, want ce", k)
	}
}

func TestWriteCSVForSpreadsheets(t *testing.T) {
	var b bytes.Buffer
	err := WriteCSV(&b, []Entry{{
		Rank: 1, Category: Unreachable, Reason: "no contract manager email", SubscriptionID: "1",
		Customer: "=HYPERLINK(\"http://x\")", Product: "Revit, \"LT\"", CMName: "Zoë Ødegård", CMPhone: "+44 1254 000101",
		EndDate: subscription.MustDate("2027-01-01"), DaysLeft: -3, Seats: intp(3),
		NoticesSent: []SentNotice{{90, subscription.MustDate("2026-10-03")}, {45, subscription.MustDate("2026-11-17")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := "\uFEFF" + strings.Join(CSVHeader, ",") + "\r\n" +
		`1,unreachable,no contract manager email,1,,"'=HYPERLINK(""http://x"")","Revit, ""LT""",2027-01-01,-3,3,,,,Zoë Ødegård,+44 1254 000101,90-day 2026-10-03; 45-day 2026-11-17,,,,,,,,,,,,,` + "\r\n"
	if got := b.String(); got != want {
		t.Fatalf("CSV =\n%q\nwant\n%q", got, want)
	}
}

// TestCSVCells: a cell a spreadsheet would run as a formula starts with an
// apostrophe; a phone number, an id and plain text are written as they are.
func TestCSVCells(t *testing.T) {
	for in, want := range map[string]string{
		"+44 1254 301888":       "+44 1254 301888",
		"+44 (0)1254 301-888":   "+44 (0)1254 301-888",
		"+1.212.555.0100":       "+1.212.555.0100",
		"+4412543018880":        "+4412543018880",
		"01254 301888":          "01254 301888",
		"(01254) 301888":        "(01254) 301888",
		"110001000008":          "110001000008",
		"AB-12_x":               "AB-12_x",
		"Zoë Ødegård":           "Zoë Ødegård",
		"=HYPERLINK(\"x\")":     "'=HYPERLINK(\"x\")",
		"=1+2":                  "'=1+2",
		"+1+2":                  "'+1+2",
		"+44 1254 301888 ext 2": "'+44 1254 301888 ext 2",
		"+cmd|' /C calc'!A0":    "'+cmd|' /C calc'!A0",
		"+SUM(1,2)":             "'+SUM(1,2)",
		"+(1)":                  "'+(1)",
		"+":                     "'+",
		"-2+3":                  "'-2+3",
		"-1254 301888":          "'-1254 301888",
		"@SUM(A1)":              "'@SUM(A1)",
		"\t=1":                  "'\t=1",
		"\r=1":                  "'\r=1",
		"":                      "",
	} {
		if got := text(in); got != want {
			t.Errorf("text(%q) = %q, want %q", in, got, want)
		}
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, []Entry{{Rank: 1, SubscriptionID: "-1-1", CMPhone: "+44 1254 301888", Customer: "-1+1"}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\r\n1,,,'-1-1,,'-1+1,") || !strings.Contains(b.String(), ",+44 1254 301888,") {
		t.Errorf("CSV %q: want the id and customer defused, the phone as it is", b.String())
	}
}

func TestScrubRemovesAddresses(t *testing.T) {
	for in, want := range map[string]string{
		"550 5.1.1 <bea@bounce.example>: Recipient address rejected": "550 5.1.1 <<address>>: Recipient address rejected",
		"550 mailbox bea.b+x@bounce.example unavailable":             "550 mailbox <address> unavailable",
		"no contract manager email":                                  "no contract manager email",
	} {
		if got := scrub(in); got != want {
			t.Errorf("scrub(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEventStreamHeartbeat checks that a quiet stream gets heartbeat
// comments, that a bad Last-Event-ID is refused, and that a stream ends when
// the server's context does.
func TestEventStreamHeartbeat(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	if err := natsbus.EnsureStream(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	hs := httptest.NewServer(&EventStream{JS: js, Log: zap.NewNop(), Heartbeat: 20 * time.Millisecond, Context: stop})
	defer hs.Close()

	req, _ := http.NewRequest(http.MethodGet, hs.URL, nil)
	req.Header.Set("Last-Event-ID", "yesterday")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("Last-Event-ID: yesterday answered %d, want 400", resp.StatusCode)
	}

	resp, err = http.Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	beats := 0
	for beats < 2 && sc.Scan() {
		if sc.Text() == ": heartbeat" {
			beats++
		}
	}
	if beats < 2 {
		t.Fatalf("stream ended after %d heartbeats: %v", beats, sc.Err())
	}
	cancel()
	for sc.Scan() {
	}
	// The scan above returns once the handler ended the response.
}

// TestBuildQuotesAndUsage: the list shows open and expired quotes, an
// expired quote is a reason to call (ranked after the lapsed), and the
// vendor's usage counts replace the assigned-seat count in the reason.
func TestBuildQuotesAndUsage(t *testing.T) {
	today := subscription.MustDate("2027-01-01")
	r := Rules{Milestones: subscription.DefaultMilestones, GraceDays: 30, Location: time.UTC}
	s := subscription.Subscription{
		ID: "1", Status: subscription.StatusActive, Seats: intp(10), SeatsAssigned: intp(7), EndDate: today.AddDays(20),
		ContractManager: subscription.Contact{Email: "n@example.com"},
		Usage:           &subscription.SeatUsage{AsOf: today, Users: 10, Unused30: 5, Unused60: 3},
	}
	e, ok := r.Build(s, nil, today)
	if !ok || e.Category != Expiring || e.Reason != "expires in 20 days; 3 of 10 seats unused for 60+ days" || e.Usage == nil || e.Usage.Unused30 != 5 {
		t.Errorf("with usage: %+v", e)
	}
	open := s
	open.QuoteNumber, open.QuoteExpiry, open.QuoteURL = "Q-7", today.AddDays(10), "https://q.example/7"
	e, _ = r.Build(open, nil, today)
	if e.Category != Expiring || e.Quote == nil || e.Quote.Status != QuoteOpen || e.Quote.URL != "https://q.example/7" ||
		e.Reason != "expires in 20 days; 3 of 10 seats unused for 60+ days; quote Q-7 open until 2027-01-11" {
		t.Errorf("open quote: %+v %+v", e, e.Quote)
	}
	gone := open
	gone.QuoteExpiry = today.AddDays(-4)
	e, _ = r.Build(gone, nil, today)
	if e.Category != QuoteExpired || e.Quote.Status != QuoteStatusGone || e.Reason != "quote Q-7 expired 4 days ago; expires in 20 days; 3 of 10 seats unused for 60+ days" {
		t.Errorf("expired quote: %+v %+v", e, e.Quote)
	}
	lapsed := s
	lapsed.EndDate = today.AddDays(-2)
	l, _ := r.Build(lapsed, nil, today)
	soon := s
	soon.ID, soon.EndDate = "3", today.AddDays(1)
	x, _ := r.Build(soon, nil, today)
	es := []Entry{x, e, l}
	Sort(es)
	if es[0].Category != Lapsed || es[1].Category != QuoteExpired || es[2].Category != Expiring {
		t.Errorf("order %s, %s, %s; want lapsed, quote_expired, expiring", es[0].Category, es[1].Category, es[2].Category)
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, []Entry{e}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(b.String(), ",5,3,0,Q-7,2026-12-28,expired\r\n") {
		t.Errorf("CSV row: %q", b.String())
	}
}
