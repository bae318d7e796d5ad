package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/calllist"
	"renewals/services/cli"
	"renewals/services/report"
)

// binCLI runs a client subcommand against the binary p.
func binCLI(t *testing.T, p *binServe, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, cli.Env{
		Getenv: func(k string) string {
			switch k {
			case "RENEWALS_SERVER":
				return p.URL
			case "RENEWALS_API_TOKEN":
				return p.Token
			}
			return ""
		},
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
	})
	return code, out.String(), errb.String()
}

func mustCLI(t *testing.T, p *binServe, args ...string) string {
	t.Helper()
	code, out, errs := binCLI(t, p, args...)
	if code != 0 {
		t.Fatalf("renewals %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// calllistAsOf reads the call list as of day through the API.
func calllistAsOf(t *testing.T, p *binServe, day subscription.Date) map[string]calllist.Entry {
	t.Helper()
	st, b, err := p.request(context.Background(), http.DefaultClient, http.MethodGet, "/api/v1/calllist?as_of="+day.String(), "", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("GET calllist as of %s: %d %v %s", day, st, err, b)
	}
	var l struct {
		Entries []calllist.Entry `json:"entries"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]calllist.Entry{}
	for _, e := range l.Entries {
		out[e.SubscriptionID] = e
	}
	return out
}

// portfolioTerm is one term of the test's portfolio and what the test
// expects of it, for the independent count of the report.
type portfolioTerm struct {
	id, rep string
	end     int // days from today
	// outcome: open, renewed_before, renewed_<stage>, lost_<reason>
	outcome string
}

// TestRenewalLoopMonth runs a month of the renewal team's loop over a
// portfolio, on the real binary: notices go out, calls with every outcome
// are recorded, a callback hides a subscription and brings it to the top
// on its day, renewing stops the next notice, a lapsed subscription walks
// through expired and suspended to cancelled on the call list, one
// subscription is renewed early and one while suspended, and the renewals
// report equals the figures the test counts itself.
func TestRenewalLoopMonth(t *testing.T) {
	relay := testenv.SMTP(t)
	p := startBinary(t, map[string]string{
		"RENEWALS_SMTP_URL": relay.URL(), "RENEWALS_MILESTONES": "90,45,30,-1", "RENEWALS_GRACE_DAYS": "60",
		"RENEWALS_RESELLER_NAME": "Sample Reseller Ltd", "RENEWALS_RESELLER_PHONE": "+44 20 7946 0000",
	})
	today := subscription.Today(time.Now(), time.UTC)
	day := func(n int) subscription.Date { return today.AddDays(n) }
	terms := []portfolioTerm{
		{"A-noanswer", "Ann", 10, "open"},
		{"C-callback", "Ann", 20, "open"},
		{"R-renewing", "Ann", 46, "open"},
		{"R2-control", "Ann", 46, "open"},
		{"S-seats", "Bob", 25, "open"},
		{"N-notrenewing", "Bob", 12, "lost_price"},
		{"W-wrongcontact", "Bob", 15, "open"},
		{"E-early", "Bob", 8, "renewed_before"},
		{"P-suspended", "Ann", -20, "renewed_suspended"},
		{"L-lapsed", "Bob", -5, "open"},
		{"X-lost", "Bob", -50, "lost_lapsed"},
	}
	var csv strings.Builder
	csv.WriteString("subscription_id,end_date,customer_name,product,seats,cm_name,cm_email,cm_phone,reseller_rep\n")
	for _, x := range terms {
		fmt.Fprintf(&csv, "%s,%s,Customer %s,Revit,10,CM %s,cm-%s@customer.example,+44 1632 960000,%s\n",
			x.id, day(x.end), x.id, x.id, strings.ToLower(x.id), x.rep)
	}
	file := filepath.Join(t.TempDir(), "portfolio.csv")
	if err := os.WriteFile(file, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, p, "import", file)

	// Day 0: the first pass sends the current stage of each.
	mustCLI(t, p, "run", "--as-of", today.String(), "--wait")

	// The calls, with every outcome.
	const secret = "Spoke to the finance director Notename Person about budget"
	calls := [][]string{
		{"A-noanswer", "--outcome", "no_answer"},
		{"C-callback", "--outcome", "callback", "--callback", day(3).String(), "--note", "call back after their board meeting"},
		{"R-renewing", "--outcome", "renewing", "--note", "PO raised"},
		{"S-seats", "--outcome", "seats_changed", "--seats", "12"},
		{"N-notrenewing", "--outcome", "not_renewing", "--reason", "price", "--note", secret},
		{"W-wrongcontact", "--outcome", "wrong_contact"},
	}
	for _, c := range calls {
		mustCLI(t, p, append([]string{"call"}, c...)...)
	}
	// Bad input gets one sentence and changes nothing.
	if code, _, errs := binCLI(t, p, "call", "A-noanswer", "--outcome", "callback"); code != 1 || !strings.Contains(errs, "callback_on") {
		t.Errorf("a callback without its date: exit %d, %q; want 1 and a sentence naming callback_on", code, errs)
	}
	if code, _, _ := binCLI(t, p, "call", "nobody", "--outcome", "no_answer"); code != 1 {
		t.Errorf("a call to an unknown subscription: exit %d, want 1", code)
	}

	// The call list follows the calls through their events.
	var list map[string]calllist.Entry
	testenv.Eventually(t, 20*time.Second, "the call list to show the calls", func() bool {
		list = calllistAsOf(t, p, today)
		w, ok := list["W-wrongcontact"]
		return ok && w.Category == calllist.Unreachable && list["S-seats"].LastCall != nil && list["A-noanswer"].LastCall != nil
	})
	if _, ok := list["C-callback"]; ok {
		t.Errorf("C-callback is on the list before its callback date")
	}
	for _, id := range []string{"R-renewing", "N-notrenewing"} {
		if _, ok := list[id]; ok {
			t.Errorf("%s is on the call list after its call", id)
		}
	}
	if a := list["A-noanswer"]; a.LastCall.Outcome != subscription.CallNoAnswer || a.LastCall.On != today {
		t.Errorf("A-noanswer's last call = %+v, want no_answer today", a.LastCall)
	}
	if s := list["S-seats"]; s.NextTermSeats == nil || *s.NextTermSeats != 12 {
		t.Errorf("S-seats next-term seats = %v, want 12", s.NextTermSeats)
	}
	if l := list["L-lapsed"]; l.Stage != "expired" || l.RenewBy == nil || *l.RenewBy != day(-5+45) {
		t.Errorf("L-lapsed on day 0 = stage %q renew by %v, want expired, %s", l.Stage, l.RenewBy, day(40))
	}

	// Day 1: R-renewing would be at its 45-day stage, as its control is.
	mustCLI(t, p, "run", "--as-of", day(1).String(), "--wait")
	keys := func() map[string]int {
		out := map[string]int{}
		for _, m := range relay.Messages() {
			msg, err := m.Parse()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range strings.Split(msg.Header.Get("X-Renewal-Notice"), ",") {
				out[strings.TrimSpace(k)]++
			}
			for _, to := range m.To {
				if !strings.HasPrefix(to, "cm-") {
					t.Errorf("a notice went to %s, not a contract manager", to)
				}
			}
		}
		return out
	}
	sent := keys()
	if sent["R2-control:"+day(46).String()+":45"] != 1 {
		t.Errorf("the control's 45-day notice was not sent on day 1: %v", sent)
	}
	for k := range sent {
		if strings.HasPrefix(k, "R-renewing:") && !strings.HasSuffix(k, ":90") {
			t.Errorf("notice %s went after the renewing call", k)
		}
	}
	if sent["R-renewing:"+day(46).String()+":90"] != 1 {
		t.Errorf("R-renewing's 90-day notice before the call: sent %d times", sent["R-renewing:"+day(46).String()+":90"])
	}
	if sent["L-lapsed:"+day(-5).String()+":-1"] != 1 {
		t.Errorf("the post-expiry notice of L-lapsed: sent %d times, want 1", sent["L-lapsed:"+day(-5).String()+":-1"])
	}

	// The callback: hidden the day before, at the top on its day and after.
	if _, ok := calllistAsOf(t, p, day(2))["C-callback"]; ok {
		t.Errorf("C-callback is on the list the day before its callback")
	}
	for _, d := range []int{3, 5} {
		l := calllistAsOf(t, p, day(d))
		c, ok := l["C-callback"]
		if !ok || c.Rank != 1 || c.Category != calllist.Callback {
			t.Errorf("day %d: C-callback = %+v (on list %v), want rank 1 in category callback", d, c, ok)
		}
	}

	// The lapsed subscription through the vendor's stages.
	for _, st := range []struct {
		day   int
		stage string
	}{{10, "expired"}, {11, "suspended"}, {40, "suspended"}, {41, "cancelled"}} {
		l, ok := calllistAsOf(t, p, day(st.day))["L-lapsed"]
		if !ok || l.Stage != st.stage {
			t.Errorf("day %d: L-lapsed stage %q (on list %v), want %s", st.day, l.Stage, ok, st.stage)
		}
	}

	// Renewals: E before its end, P while suspended.
	renew := filepath.Join(t.TempDir(), "renewals.csv")
	if err := os.WriteFile(renew, []byte("subscription_id,end_date,customer_name,product,seats,cm_name,cm_email,cm_phone,reseller_rep\n"+
		fmt.Sprintf("E-early,%s,Customer E-early,Revit,10,CM E-early,cm-e-early@customer.example,+44 1632 960000,Bob\n", day(8+365))+
		fmt.Sprintf("P-suspended,%s,Customer P-suspended,Revit,10,CM P-suspended,cm-p-suspended@customer.example,+44 1632 960000,Ann\n", day(-20+365))), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, p, "import", renew)

	// The report, against the test's own count.
	from, to := day(-60), day(60)
	st, b, err := p.request(context.Background(), http.DefaultClient, http.MethodGet,
		"/api/v1/report/renewals?from="+from.String()+"&to="+to.String()+"&as_of="+today.String(), "", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("GET report: %d %v %s", st, err, b)
	}
	var rep report.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	type want struct {
		cameUp, before, late, suspended, lost, price, lapsed, open, calls, notices int
	}
	exp := map[string]*want{}
	callsOf := map[string]int{}
	for _, c := range calls {
		callsOf[c[0]]++
	}
	sent = keys()
	for _, x := range terms {
		m := day(x.end).String()[:7]
		if exp[m] == nil {
			exp[m] = &want{}
		}
		w := exp[m]
		w.cameUp++
		switch x.outcome {
		case "open":
			w.open++
		case "renewed_before":
			w.before++
		case "renewed_suspended":
			w.late++
			w.suspended++
		case "lost_price":
			w.lost++
			w.price++
		case "lost_lapsed":
			w.lost++
			w.lapsed++
		}
		w.calls += callsOf[x.id]
		for k, n := range sent {
			if strings.HasPrefix(k, x.id+":"+day(x.end).String()+":") {
				w.notices += n
			}
		}
	}
	total := want{}
	for _, m := range rep.Months {
		w := exp[m.Month]
		if w == nil {
			w = &want{}
		}
		got := want{m.CameUp, m.RenewedBeforeEnd, m.RenewedLate, m.RenewedAfterEnd["suspended"], m.Lost,
			m.LostReasons["price"], m.LostReasons["lapsed"], m.Open, m.Calls, m.NoticesSent}
		if got != *w {
			t.Errorf("report month %s = %+v, want %+v", m.Month, got, *w)
		}
		total.cameUp += w.cameUp
		if d := w.before + w.late + w.lost; d > 0 {
			rate := float64(w.before+w.late) / float64(d)
			if m.RenewalRate == nil || *m.RenewalRate != rate {
				t.Errorf("report month %s renewal rate = %v, want %v", m.Month, m.RenewalRate, rate)
			}
		}
		delete(exp, m.Month)
	}
	if len(exp) > 0 {
		t.Errorf("months missing from the report: %v", exp)
	}
	if rep.Total.CameUp != len(terms) || total.cameUp != len(terms) {
		t.Errorf("report total came up %d, months add to %d, want %d", rep.Total.CameUp, total.cameUp, len(terms))
	}
	if code, out, _ := binCLI(t, p, "calllist", "--format", "csv"); code != 0 || !strings.Contains(out, "stage,renew_by,last_call") {
		t.Errorf("calllist CSV lacks the new columns: %d %.200s", code, out)
	}
	st, b, _ = p.request(context.Background(), http.DefaultClient, http.MethodGet,
		"/api/v1/report/renewals?format=csv&from="+from.String()+"&to="+to.String()+"&as_of="+today.String(), "", nil)
	if st != http.StatusOK || !strings.HasPrefix(string(b), "month,came_up,renewed_before_end,renewed_late,renewed_expired,renewed_suspended,renewed_cancelled,") ||
		!strings.Contains(string(b), fmt.Sprintf("total,%d,", len(terms))) {
		t.Errorf("report CSV: %d\n%s", st, b)
	}

	// The note is personal data: never in clear in the data dir, and gone
	// with the subscription's erasure.
	scanFor(t, p.DataDir, secret, "before erasure")
	st, b, _ = p.request(context.Background(), http.DefaultClient, http.MethodGet, "/api/v1/subscriptions/N-notrenewing/calls", "", nil)
	if st != http.StatusOK || !strings.Contains(string(b), secret) {
		t.Fatalf("GET calls of N-notrenewing: %d %s", st, b)
	}
	mustCLI(t, p, "erase", "N-notrenewing")
	if st, b, _ := p.request(context.Background(), http.DefaultClient, http.MethodGet, "/api/v1/subscriptions/N-notrenewing/calls", "", nil); st != http.StatusNotFound {
		t.Errorf("GET calls after erasure: %d %s, want 404", st, b)
	}
	scanFor(t, p.DataDir, secret, "after erasure")
	if strings.Contains(p.logs(), "Notename") {
		t.Errorf("the note reached the log")
	}
}

// scanFor fails when any file under dir holds text.
func scanFor(t *testing.T, dir, text, when string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // a file removed while we walk
		}
		if bytes.Contains(b, []byte(text)) || bytes.Contains(b, []byte("Notename")) {
			t.Errorf("%s: the call note is in clear in %s", when, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
