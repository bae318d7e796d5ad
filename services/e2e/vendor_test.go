package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"renewals/services/calllist"
	"renewals/services/e2e"
)

// emailParts returns the decoded text and HTML parts of an .eml.
func emailParts(t *testing.T, eml []byte) (header mail.Header, text, html string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(eml))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			r = quotedprintable.NewReader(p)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		switch mt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); mt {
		case "text/plain":
			text = string(b)
		case "text/html":
			html = string(b)
		}
	}
	return msg.Header, text, html
}

// TestVendorWorkbookUsageAndQuotes: the vendor's workbook is imported as it
// comes, its seat-usage export after it; the notices then name each quote
// (open or expired) and the seats unused for 60+ days, and so does the call
// list, on which the expired quote is a reason to call. No user of the
// usage export is named in any email, log line or answer.
func TestVendorWorkbookUsageAndQuotes(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	waitStartupPass(t, s)
	dir := t.TempDir()
	asOf := "2027-02-14"
	end := time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC) // 45 days after asOf

	book := excelize.NewFile()
	date := func(d time.Time) time.Time { return d } // a date cell: a serial number with a date format
	rows := [][]any{
		{"Subscription ID", "Contract Number", "Offering Name", "Seat Quantity", "End Date", "Subscription Status",
			"Contract Manager Email", "Contract Manager Name", "Team Alias", "Quote Number", "Quote Expiry", "Quote URL"},
		{"150000000001", "CN-150", "AutoCAD", 10, date(end), "Active", "cm1@customer.example", "Carla Müller", "Design",
			"Q-150-1", date(end.AddDate(0, 0, -21)), "https://quotes.reseller.example/q/150-1"},
		{"150000000002", "CN-150", "Revit", 5, date(end), "Active", "cm2@customer.example", "Cem Öz", "Design",
			"Q-150-2", date(end.AddDate(0, 0, -49)), ""},
		{"150000000003", "CN-151", "Inventor", 2, date(end), "Terminated", "cm3@customer.example", "", "", nil, nil, nil},
	}
	for i, r := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := book.SetSheetRow("Sheet1", cell, &r); err != nil {
			t.Fatal(err)
		}
	}
	wb := filepath.Join(dir, "Autodesk export.xlsx")
	if err := book.SaveAs(wb); err != nil {
		t.Fatal(err)
	}
	if r := s.CLI(t, "import", wb); r.Code != 0 || !strings.HasPrefix(r.Stdout, "3 rows: 3 created, 0 updated, 0 unchanged, 0 rejected\n") {
		t.Fatalf("import of the workbook: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The usage export: 10 users of AutoCAD by subscription (3 idle for
	// 70 days, 2 for 40), 5 of Revit by contract and product (all recent).
	var usage strings.Builder
	usage.WriteString("email,first_name,last_name,subscription_id,contract_number,product_name,last_accessed,days_inactive\n")
	var users []string
	for i := range 15 {
		email, first, last := fmt.Sprintf("engineer%02d@customer.example", i), fmt.Sprintf("Firstname%02d", i), fmt.Sprintf("Lastname%02d", i)
		users = append(users, email, first, last)
		switch {
		case i < 3:
			fmt.Fprintf(&usage, "%s,%s,%s,150000000001,,,,70\n", email, first, last)
		case i < 5:
			fmt.Fprintf(&usage, "%s,%s,%s,150000000001,,,2027-01-05,\n", email, first, last)
		case i < 10:
			fmt.Fprintf(&usage, "%s,%s,%s,150000000001,,,2027-02-13 09:12:00,\n", email, first, last)
		default:
			fmt.Fprintf(&usage, "%s,%s,%s,,CN-150,revit,2027-02-10,\n", email, first, last)
		}
	}
	up := filepath.Join(dir, "usage.csv")
	if err := os.WriteFile(up, []byte(usage.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.CLI(t, "import-usage", up, "--as-of", asOf)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "15 user rows: 15 counted, 0 rejected, 0 unmatched; seat usage as of 2027-02-14 stored for 2 subscriptions (2 updated, 0 unchanged)\n") {
		t.Fatalf("import-usage: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// The call list, before the notices go.
	r = s.CLI(t, "calllist", "--format", "json", "--as-of", asOf)
	var list struct {
		Entries []calllist.Entry `json:"entries"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("calllist: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
	byID := map[string]calllist.Entry{}
	for _, e := range list.Entries {
		byID[e.SubscriptionID] = e
	}
	if e := byID["150000000001"]; e.Category != calllist.Expiring || e.Reason != "expires in 45 days; 3 of 10 seats unused for 60+ days; quote Q-150-1 open until 2027-03-10" ||
		e.Usage == nil || e.Usage.Unused30 != 5 || e.Usage.Unused90 != 0 || e.Quote == nil || e.Quote.URL != "https://quotes.reseller.example/q/150-1" {
		t.Errorf("call list, AutoCAD: %+v", e)
	}
	if e := byID["150000000002"]; e.Category != calllist.QuoteExpired || e.Rank != 1 || e.Reason != "quote Q-150-2 expired 4 days ago; expires in 45 days" || e.Quote.Status != "expired" {
		t.Errorf("call list, Revit: %+v", e)
	}
	if _, ok := byID["150000000003"]; ok {
		t.Errorf("the terminated subscription is on the call list")
	}

	if r := s.CLI(t, "run", "--as-of", asOf, "--wait"); r.Code != 0 {
		t.Fatalf("run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	texts := map[string]string{}
	htmls := map[string]string{}
	for name, eml := range s.Outbox(t) {
		h, text, html := emailParts(t, eml)
		texts[h.Get("X-Renewal-Notice")], htmls[h.Get("X-Renewal-Notice")] = text, html
		for _, u := range users {
			if bytes.Contains(eml, []byte(u)) {
				t.Errorf("email %s names a user of the usage export: %s", name, u)
			}
		}
	}
	if len(texts) != 2 {
		t.Fatalf("%d emails, want 2 (the terminated subscription gets none): %v", len(texts), texts)
	}
	a, b := texts["150000000001:2027-03-31:45"], texts["150000000002:2027-03-31:45"]
	for _, want := range []string{
		"3 of 10 seats unused for 60+ days, as the vendor's usage report of 14 February 2027 shows",
		"Our quote Q-150-1 is ready for you, valid until 10 March 2027.",
		"View it: https://quotes.reseller.example/q/150-1",
		"Dear Carla Müller,",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("AutoCAD notice lacks %q:\n%s", want, a)
		}
	}
	if h := htmls["150000000001:2027-03-31:45"]; !strings.Contains(h, `<a href="https://quotes.reseller.example/q/150-1"`) {
		t.Errorf("AutoCAD notice's HTML does not link the quote:\n%s", h)
	}
	if want := "Our quote Q-150-2 expired on 10 February 2027. Ask us for a new one"; !strings.Contains(b, want) || strings.Contains(b, "unused for") {
		t.Errorf("Revit notice: want %q and no unused seats (all used):\n%s", want, b)
	}
	for _, u := range users {
		if strings.Contains(s.Logs(), u) || strings.Contains(r.Stdout, u) {
			t.Errorf("the logs or the report name a user of the usage export: %s", u)
		}
	}
}
