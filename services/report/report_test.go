package report_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/calls"
	"renewals/pkg/kvstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/report"
)

// TestReportMonthsAndInput builds a report on the JetStream store: terms
// fall into the month of their end date, renewals recorded at upsert count
// by their stage, a cancelled one by its call's reason, and bad ranges get
// one sentence.
func TestReportMonthsAndInput(t *testing.T) {
	srv := testenv.NATSAt(t, t.TempDir(), -1)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	st, ledger, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	pe, _ := subscription.ParsePostExpiry(subscription.DefaultPostExpiry)
	now := time.Date(2027, 3, 20, 9, 0, 0, 0, time.UTC)
	rec := &calls.RecordingStore{Store: st, Log: st, PostExpiry: pe, Location: time.UTC, Now: func() time.Time { return now }}
	d := subscription.MustDate
	sub := func(id, end string, status subscription.Status) subscription.Subscription {
		return subscription.Subscription{ID: id, EndDate: d(end), Status: status}
	}
	if _, err := rec.Upsert(ctx, []subscription.Subscription{
		sub("early", "2027-03-31", "active"), sub("late", "2027-02-10", "active"),
		sub("open", "2027-03-25", "active"), sub("gone", "2027-03-05", "cancelled"), sub("lapsed", "2027-01-15", "active"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddCall(ctx, subscription.Call{ID: subscription.CallID(now), SubscriptionID: "gone", EndDate: d("2027-03-05"),
		At: now, On: d("2027-03-01"), Outcome: subscription.CallNotRenewing, Reason: "competitor"}); err != nil {
		t.Fatal(err)
	}
	// Renewed today: early before its end, late 38 days after (suspended).
	if _, err := rec.Upsert(ctx, []subscription.Subscription{sub("early", "2028-03-31", "active"), sub("late", "2028-02-10", "active")}); err != nil {
		t.Fatal(err)
	}
	b := &report.Builder{Store: st, Ledger: ledger, Calls: st, Renewals: st, PostExpiry: pe, Location: time.UTC, Now: func() time.Time { return now }}
	r, err := b.Build(ctx, d("2027-01-01"), d("2027-03-31"), subscription.Date{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Months) != 3 || r.Months[0].Month != "2027-01" || r.Months[2].Month != "2027-03" {
		t.Fatalf("months %+v", r.Months)
	}
	jan, feb, mar := r.Months[0], r.Months[1], r.Months[2]
	if jan.CameUp != 1 || jan.Lost != 1 || jan.LostReasons["lapsed"] != 1 {
		t.Errorf("January %+v: want the one lapsed past its stages lost", jan)
	}
	if feb.CameUp != 1 || feb.RenewedLate != 1 || feb.RenewedAfterEnd["suspended"] != 1 || *feb.RenewalRate != 1 {
		t.Errorf("February %+v: want one renewed late while suspended", feb)
	}
	if mar.CameUp != 3 || mar.RenewedBeforeEnd != 1 || mar.Open != 1 || mar.Lost != 1 || mar.LostReasons["competitor"] != 1 ||
		mar.Calls != 1 || mar.CallsByOutcome["not_renewing"] != 1 || *mar.RenewalRate != 0.5 {
		t.Errorf("March %+v", mar)
	}
	if r.Total.CameUp != 5 || r.Total.Renewed != 2 || r.Total.Lost != 2 {
		t.Errorf("total %+v", r.Total)
	}

	h := &report.Handler{Builder: b, Log: zap.NewNop()}
	for q, want := range map[string]string{
		"from=2027-03&to=2027-01":    "before from",
		"from=2020-01&to=2027-01":    "at most 36 months",
		"from=March":                 "YYYY-MM-DD",
		"format=xml":                 "use json or csv",
		"from=2027-03&as_of=2027-03": "YYYY-MM-DD",
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/report/renewals?"+q, nil))
		var e struct{ Error, Code string }
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != http.StatusBadRequest || !strings.Contains(e.Error, want) || e.Code != "invalid" {
			t.Errorf("%s: %d %s, want 400 saying %q", q, w.Code, w.Body, want)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/report/renewals?from=2027-02&to=2027-02&format=csv", nil))
	lines := strings.Split(strings.TrimSpace(w.Body.String()), "\r\n")
	if w.Code != http.StatusOK || len(lines) != 3 || !strings.HasPrefix(lines[1], "2027-02,1,0,1,0,1,0,1,0,,0,1.000,") {
		t.Errorf("CSV: %d %q", w.Code, lines)
	}
}
