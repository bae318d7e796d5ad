package e2e_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"renewals/pkg/subscription"
	"renewals/services/e2e"
)

// pagingAsOf is the day the paging tests reckon from: far from the real
// today, so that the start-up pass sends nothing of theirs.
var pagingAsOf = subscription.MustDate("2031-06-01")

// importPortfolio imports n subscriptions ending from 20 days before
// pagingAsOf to 90 after it; every fifth has no contract manager email.
func importPortfolio(t *testing.T, s *e2e.Server, n int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("subscription_id,end_date,customer_name,product,cm_name,cm_email,cm_phone,reseller_rep\n")
	for i := range n {
		email := fmt.Sprintf("cm%d@customer.example", i)
		if i%5 == 0 {
			email = ""
		}
		fmt.Fprintf(&b, "4100%08d,%s,Customer %d,Suite,Manager %d,%s,+44 20 7946 %04d,Rep %d\n",
			i, pagingAsOf.AddDays(-20+(i*7)%110), i, i, email, i, i%3)
	}
	path := filepath.Join(t.TempDir(), "portfolio.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := s.CLI(t, "import", path); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
}

// follow reads path page after page (adding limit) until an answer has no
// next_cursor, decoding each into a fresh page and handing it to add.
func follow[P any](t *testing.T, s *e2e.Server, path string, limit int, add func(P)) int {
	t.Helper()
	pages := 0
	cursor := ""
	for {
		q := fmt.Sprintf("%s&limit=%d", path, limit)
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		resp, body := s.Get(t, q)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", q, resp.StatusCode, body)
		}
		var p P
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("GET %s: %v", q, err)
		}
		var next struct {
			Next string `json:"next_cursor"`
		}
		_ = json.Unmarshal(body, &next)
		add(p)
		pages++
		if next.Next == "" {
			return pages
		}
		if pages > 1000 {
			t.Fatal("more than 1,000 pages: the cursor does not move on")
		}
		cursor = next.Next
	}
}

type callListPage struct {
	Count   int `json:"count"`
	Total   int `json:"total"`
	Entries []struct {
		Rank int    `json:"rank"`
		ID   string `json:"subscription_id"`
	} `json:"entries"`
}

// TestCallListPages: the pages of the call list, followed by their
// cursors, are the whole list in order, ranked from its top; the CSV pages
// carry the next one in a Link header.
func TestCallListPages(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	importPortfolio(t, s, 60)
	base := "/api/v1/calllist?as_of=" + pagingAsOf.String()
	var whole callListPage
	if code := s.API(t, http.MethodGet, base, nil, &whole); code != http.StatusOK {
		t.Fatalf("GET %s: %d", base, code)
	}
	if whole.Count < 40 || whole.Count != len(whole.Entries) || whole.Total != whole.Count {
		t.Fatalf("the whole list: count %d, total %d, %d entries", whole.Count, whole.Total, len(whole.Entries))
	}
	var want, got []string
	for _, e := range whole.Entries {
		want = append(want, fmt.Sprintf("%d %s", e.Rank, e.ID))
	}
	pages := follow(t, s, base, 7, func(p callListPage) {
		if p.Total != whole.Total || p.Count != len(p.Entries) || p.Count > 7 {
			t.Errorf("a page: count %d, total %d, %d entries", p.Count, p.Total, len(p.Entries))
		}
		for _, e := range p.Entries {
			got = append(got, fmt.Sprintf("%d %s", e.Rank, e.ID))
		}
	})
	if !slices.Equal(got, want) {
		t.Errorf("the pages, one after another:\n%v\nwant the whole list:\n%v", got, want)
	}
	if wantPages := (whole.Count + 6) / 7; pages != wantPages {
		t.Errorf("%d pages of 7 for %d entries, want %d", pages, whole.Count, wantPages)
	}

	// The CSV: a header, the page's rows, and a Link to the next page.
	resp, body := s.Get(t, base+"&format=csv&limit=5&reseller_rep=Rep+1")
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(body), "\uFEFF"))).ReadAll()
	if err != nil || resp.StatusCode != http.StatusOK || len(rows) != 6 {
		t.Fatalf("a CSV page: %d, %d rows, %v:\n%s", resp.StatusCode, len(rows), err, body)
	}
	link := resp.Header.Get("Link")
	if !strings.Contains(link, `rel="next"`) || !strings.Contains(link, "cursor=") || !strings.Contains(link, "reseller_rep=Rep+1") {
		t.Errorf("the CSV page's Link header %q does not lead to the next page of the same list", link)
	}

	for _, q := range []string{"&limit=0", "&limit=many", "&limit=10001", "&cursor=bm90IGEgY3Vyc29y", "&cursor=%25%25"} {
		resp, body := s.Get(t, base+q)
		var e struct{ Code string }
		if json.Unmarshal(body, &e); resp.StatusCode != http.StatusBadRequest || e.Code != "invalid" {
			t.Errorf("GET %s: %d %s, want 400 invalid", base+q, resp.StatusCode, body)
		}
	}
}

type forecastPage struct {
	Days []struct {
		Date    string `json:"date"`
		Notices []struct {
			Key string `json:"notice_key"`
		} `json:"notices"`
	} `json:"days"`
}

// TestForecastPages: the forecast's pages, followed by their cursors, hold
// every planned notice once, on its day, in order.
func TestForecastPages(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	importPortfolio(t, s, 40)
	base := "/api/v1/forecast?days=60&from=" + pagingAsOf.String()
	var whole forecastPage
	if code := s.API(t, http.MethodGet, base, nil, &whole); code != http.StatusOK {
		t.Fatalf("GET %s: %d", base, code)
	}
	if len(whole.Days) != 60 || whole.Days[0].Date != pagingAsOf.String() {
		t.Fatalf("the whole forecast has %d days", len(whole.Days))
	}
	var want, got []string
	for _, d := range whole.Days {
		for _, n := range d.Notices {
			want = append(want, d.Date+" "+n.Key)
		}
	}
	if len(want) < 30 {
		t.Fatalf("the forecast plans only %d notices", len(want))
	}
	lastDay := ""
	follow(t, s, base, 4, func(p forecastPage) {
		n := 0
		for _, d := range p.Days {
			if d.Date < lastDay {
				t.Errorf("a page starts at %s, before the last page's %s", d.Date, lastDay)
			}
			lastDay = d.Date
			for _, x := range d.Notices {
				got = append(got, d.Date+" "+x.Key)
				n++
			}
		}
		if n > 4 {
			t.Errorf("a page of at most 4 notices holds %d", n)
		}
	})
	if !slices.Equal(got, want) {
		t.Errorf("the pages, one after another:\n%v\nwant the whole forecast:\n%v", got, want)
	}
}

type noticesPage struct {
	Notices []struct {
		Key     string `json:"notice_key"`
		Outcome string `json:"outcome"`
	} `json:"notices"`
}

// TestNoticesPages: the ledger of every subscription, paged, is the whole
// ledger in order.
func TestNoticesPages(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	importPortfolio(t, s, 30)
	for _, back := range []int{60, 40, 0} { // three passes: several notices a subscription
		if r := s.CLI(t, "run", "--as-of", pagingAsOf.AddDays(-back).String(), "--wait"); r.Code != 0 {
			t.Fatalf("run: %d %s %s", r.Code, r.Stdout, r.Stderr)
		}
	}
	base := "/api/v1/notices?as_of=" + pagingAsOf.String()
	var whole noticesPage
	if code := s.API(t, http.MethodGet, base, nil, &whole); code != http.StatusOK {
		t.Fatalf("GET %s: %d", base, code)
	}
	if len(whole.Notices) < 30 {
		t.Fatalf("the ledger holds only %d notices", len(whole.Notices))
	}
	var want, got []string
	for _, n := range whole.Notices {
		want = append(want, n.Key+" "+n.Outcome)
	}
	follow(t, s, base, 3, func(p noticesPage) {
		if len(p.Notices) > 3 {
			t.Errorf("a page of at most 3 holds %d", len(p.Notices))
		}
		for _, n := range p.Notices {
			got = append(got, n.Key+" "+n.Outcome)
		}
	})
	if !slices.Equal(got, want) {
		t.Errorf("the pages, one after another:\n%v\nwant the whole ledger:\n%v", got, want)
	}
}
