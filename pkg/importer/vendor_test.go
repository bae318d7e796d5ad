package importer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/charmap"

	"renewals/pkg/subscription"
)

// The vendor's export as a reseller downloads it from Autodesk's portal,
// with the headers as a spreadsheet shows them. The subscriptions carry a £
// and accented names, so that every encoding has something to get wrong.
var vendorHeader = []string{
	"Subscription ID", "Contract Number", "Offering Name", "Seat Quantity", "Start Date", "End Date",
	"Autorenew Date", "Subscription Status", "Term", "Contract Manager Email", "Team Alias",
	"Account Name", "Contract Manager Name", "Reseller Name",
}

type vendorRow struct {
	id, contract, offering, seats string
	start, end, autorenew         time.Time
	status, term, cm, team        string
	account, cmName, reseller     string
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

var vendorRows = []vendorRow{
	{"110000000001", "CN-7001", "AutoCAD LT", "10", day("2026-04-01"), day("2027-03-31"), day("2027-03-31"),
		"Active", "Annual", "zoe@creme.example", "Crème Team", "Crème £ Brûlée Ltd", "Zoë Müller", "Acme Reseller"},
	{"110000000002", "CN-7001", "Revit", "5", day("2026-04-01"), day("2027-03-31"), time.Time{},
		"Expired", "Annual", "zoe@creme.example", "Crème Team", "Crème £ Brûlée Ltd", "Zoë Müller", "Acme Reseller"},
	{"110000000003", "CN-7002", "Inventor Professional", "2", day("2025-06-15"), day("2026-06-14"), time.Time{},
		"Canceled", "3-Year", "ann@garcon.example", "Garçon", "Garçon & Fils", "Ana Núñez", "Acme Reseller"},
}

// wantVendor is what every version of the export must store.
func wantVendor() map[string]subscription.Subscription {
	out := map[string]subscription.Subscription{}
	for _, r := range vendorRows {
		n := len(r.seats)
		seats := 0
		for i := range n {
			seats = seats*10 + int(r.seats[i]-'0')
		}
		st, _ := statusOf(r.status)
		s := subscription.Subscription{
			ID: r.id, ContractNumber: r.contract, Product: r.offering, Seats: &seats,
			StartDate: subscription.DateOf(r.start), EndDate: subscription.DateOf(r.end), Status: st, Term: r.term,
			Team: r.team, CustomerName: r.account,
			ContractManager: subscription.Contact{Email: r.cm, Name: r.cmName},
		}
		if !r.autorenew.IsZero() {
			s.AutorenewDate = subscription.DateOf(r.autorenew)
		}
		out[r.id] = s
	}
	return out
}

// vendorText writes the export as text with sep between fields and dates
// in layout.
func vendorText(sep, layout, eol string) string {
	var b strings.Builder
	b.WriteString(strings.Join(vendorHeader, sep) + eol)
	date := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(layout)
	}
	for _, r := range vendorRows {
		b.WriteString(strings.Join([]string{r.id, r.contract, r.offering, r.seats, date(r.start), date(r.end),
			date(r.autorenew), r.status, r.term, r.cm, r.team, r.account, r.cmName, r.reseller}, sep) + eol)
	}
	return b.String()
}

// vendorWorkbook writes the export as an .xlsx with excelize, as Excel
// saves it: dates as date cells (serial numbers with a date format), seats
// as numbers; on a second sheet unless first.
func vendorWorkbook(t *testing.T, sheet string) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	if sheet != "Sheet1" {
		f.SetSheetName("Sheet1", "Notes")
		f.SetCellValue("Notes", "A1", "Exported from the vendor's portal")
		if _, err := f.NewSheet(sheet); err != nil {
			t.Fatal(err)
		}
	}
	dateStyle, err := f.NewStyle(&excelize.Style{NumFmt: 14})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]any, len(vendorHeader))
	for i, h := range vendorHeader {
		head[i] = h
	}
	if err := sw.SetRow("A1", head); err != nil {
		t.Fatal(err)
	}
	date := func(d time.Time) any {
		if d.IsZero() {
			return nil
		}
		return excelize.Cell{StyleID: dateStyle, Value: d}
	}
	for i, r := range vendorRows {
		n := 0
		for _, c := range r.seats {
			n = n*10 + int(c-'0')
		}
		cell, _ := excelize.CoordinatesToCellName(1, i+2)
		if err := sw.SetRow(cell, []any{r.id, r.contract, r.offering, n, date(r.start), date(r.end), date(r.autorenew),
			r.status, r.term, r.cm, r.team, r.account, r.cmName, r.reseller}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := f.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func utf16BE(s string) []byte {
	le := utf16LE(s)
	for i := 0; i+1 < len(le); i += 2 {
		le[i], le[i+1] = le[i+1], le[i]
	}
	return le
}

func cp1252(t *testing.T, s string) []byte {
	t.Helper()
	b, err := charmap.Windows1252.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportVendorExports: every version of one export (the spreadsheet
// headers as CSV, as an .xlsx, ';'-separated, UTF-16 as Excel's Unicode
// Text, Windows-1252, dates day first or month first) stores the same
// subscriptions, and the report says how it read the file.
func TestImportVendorExports(t *testing.T) {
	iso := vendorText(",", time.DateOnly, "\r\n")
	for _, tc := range []struct {
		name     string
		in       []byte
		opts     Options
		encoding string
		sheet    string
		dates    DateFormat
	}{
		{"spreadsheet headers", []byte(iso), Options{}, EncodingUTF8, "", ""},
		{"with BOM, as CSV", []byte("\uFEFF" + iso), Options{Format: FormatCSV}, EncodingUTF8BOM, "", ""},
		{"xlsx", vendorWorkbook(t, "Sheet1"), Options{}, "", "Sheet1", ""},
		{"xlsx, second sheet named", vendorWorkbook(t, "Subscriptions"), Options{Sheet: "subscriptions", Format: FormatXLSX}, "", "Subscriptions", ""},
		{"semicolons", []byte(vendorText(";", time.DateOnly, "\n")), Options{}, EncodingUTF8, "", ""},
		{"utf-16 unicode text", utf16LE(vendorText("\t", "02/01/2006", "\r\n")), Options{}, EncodingUTF16LE, "", DateDMY},
		{"utf-16 big-endian", utf16BE(vendorText(",", time.DateOnly, "\n")), Options{}, EncodingUTF16BE, "", ""},
		{"windows-1252", cp1252(t, vendorText(";", "02/01/2006", "\r\n")), Options{}, EncodingWindows1252, "", DateDMY},
		{"DD/MM/YYYY", []byte(vendorText(",", "02/01/2006", "\n")), Options{}, EncodingUTF8, "", DateDMY},
		{"MM/DD/YYYY", []byte(vendorText(",", "01/02/2006", "\n")), Options{}, EncodingUTF8, "", DateMDY},
		{"M/D/YYYY given", []byte(vendorText(",", "1/2/2006", "\n")), Options{DateFormat: DateMDY}, EncodingUTF8, "", DateMDY},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{}
			tc.opts.Store = st
			rep, err := Import(context.Background(), bytes.NewReader(tc.in), tc.opts)
			if err != nil {
				t.Fatalf("Import: %v", err)
			}
			if rep.Rows != 3 || rep.Created != 3 || rep.Rejected != 0 {
				t.Fatalf("report %+v, want 3 rows created", rep)
			}
			if rep.Encoding != tc.encoding || rep.Sheet != tc.sheet || rep.DateFormat != tc.dates {
				t.Errorf("report read %q, sheet %q, dates %q; want %q, %q, %q", rep.Encoding, rep.Sheet, rep.DateFormat, tc.encoding, tc.sheet, tc.dates)
			}
			if got, want := strings.Join(rep.UnknownColumns, ","), "reseller name"; got != want {
				t.Errorf("unknown columns %q, want %q", got, want)
			}
			for id, want := range wantVendor() {
				if got := st.subs[id]; !subscription.Equal(got, want) {
					t.Errorf("stored %s:\n got %+v\nwant %+v", id, got, want)
				}
			}
		})
	}
}

// TestImportVendorRefusals: a file that cannot be read as it is gets one
// sentence that says what it is and what to do, and nothing is stored.
func TestImportVendorRefusals(t *testing.T) {
	ambiguous := "Subscription ID,End Date,Start Date\r\n1,03/04/2027,03/04/2026\r\n2,05/06/2027,01/02/2026\r\n3,2027-09-30,\r\n"
	for _, tc := range []struct {
		name string
		in   []byte
		opts Options
		want string
	}{
		{"ambiguous dates", []byte(ambiguous), Options{},
			"the file does not tell whether its dates are day first or month first (03/04/2027 could be 3 April 2027 or 4 March 2027, and its dates fit either): import it again with --date-format DD/MM/YYYY or --date-format MM/DD/YYYY"},
		{"xlsx named .csv", vendorWorkbook(t, "Sheet1"), Options{Format: FormatCSV},
			"this is an Excel workbook (.xlsx), not CSV: name the file .xlsx (or give --format xlsx) and import it again"},
		{"pdf", []byte("%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n"), Options{},
			"this is a PDF, not CSV: a PDF cannot be imported; export the subscriptions from where they came from as CSV UTF-8 (Comma delimited)"},
		{"no such sheet", vendorWorkbook(t, "Subscriptions"), Options{Sheet: "Renewals"},
			`the workbook has no sheet named "Renewals": its sheets are Notes, Subscriptions; name one with --sheet`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{}
			tc.opts.Store = st
			_, err := Import(context.Background(), bytes.NewReader(tc.in), tc.opts)
			fe, ok := errors.AsType[*FileError](err)
			if !ok || fe.Reason != tc.want {
				t.Fatalf("Import: %v\nwant a file error: %s", err, tc.want)
			}
			if len(st.subs) != 0 {
				t.Errorf("stored %d subscriptions of a refused file", len(st.subs))
			}
		})
	}

	// Told the order, the same file imports.
	st := &memStore{}
	rep, err := Import(context.Background(), strings.NewReader(ambiguous), Options{Store: st, DateFormat: DateDMY})
	if err != nil || rep.Created != 3 || st.subs["1"].EndDate != subscription.MustDate("2027-04-03") || st.subs["2"].StartDate != subscription.MustDate("2026-02-01") {
		t.Errorf("with --date-format DD/MM/YYYY: report %+v, err %v, stored %+v", rep, err, st.subs)
	}
	// One row that tells the order settles it for the rows before it.
	st = &memStore{}
	rep, err = Import(context.Background(), strings.NewReader(ambiguous+"4,12/25/2027,\r\n"), Options{Store: st})
	if err != nil || rep.Created != 4 || rep.DateFormat != DateMDY || st.subs["1"].EndDate != subscription.MustDate("2027-03-04") {
		t.Errorf("with a telling row last: report %+v, err %v, stored %+v", rep, err, st.subs)
	}
	// A row against the file's order is rejected, the others kept.
	rep, err = Import(context.Background(), strings.NewReader("subscription_id,end_date\n1,31/05/2027\n2,05/31/2027\n"), Options{Store: &memStore{}})
	if err != nil || rep.Created != 1 || len(rep.Rejections) != 1 || rep.Rejections[0].Reason != `"05/31/2027" is not a date: the file's dates are DD/MM/YYYY, and this is not a day in that order` {
		t.Errorf("a row against the order: report %+v, err %v", rep, err)
	}
}

// TestImportColumnMap: a layout the import does not know, through a map.
func TestImportColumnMap(t *testing.T) {
	m, err := ParseMap(strings.NewReader("# our CRM's export\nSerial No. = subscription_id\n\nExpires On = end_date\nSeats Bought=seats\nKunde = customer_name\n"))
	if err != nil {
		t.Fatal(err)
	}
	st := &memStore{}
	rep, err := Import(context.Background(), strings.NewReader("Serial No.;Expires On;Seats Bought;Kunde;Region\n77;2027-05-31;4;Müller GmbH;North\n"), Options{Store: st, Map: m})
	if err != nil || rep.Created != 1 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	if s := st.subs["77"]; s.EndDate != subscription.MustDate("2027-05-31") || s.Seats == nil || *s.Seats != 4 || s.CustomerName != "Müller GmbH" {
		t.Errorf("stored %+v", s)
	}
	if got := strings.Join(rep.UnknownColumns, ","); got != "region" {
		t.Errorf("unknown columns %q, want region once", got)
	}
	for _, tc := range []struct{ in, want string }{
		{"Serial No. subscription_id\n", `line 1: "Serial No. subscription_id" is not a mapping: write one "their column = our field" a line`},
		{"a = b\n", `line 1: "b" is not a field of the import: use one of subscription_id, end_date`},
		{"x = seats\nX = product\n", `line 2: column "X" is mapped twice`},
	} {
		if _, err := ParseMap(strings.NewReader(tc.in)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("ParseMap(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestImportQuoteFields: the vendor's fields and a quote are validated.
func TestImportQuoteFields(t *testing.T) {
	in := "subscription_id,end_date,quote_number,quote_expiry,quote_url,contract_number,team,autorenew_date\n" +
		"1,2027-05-31,Q-1001,2027-04-30,https://quotes.example/q/1001?t=ab,CN-1,Team A,2027-05-31\n" +
		"2,2027-05-31,Q-1002,someday,javascript:alert(1),,,\n"
	rep, st, err := importString(t, in)
	if err != nil {
		t.Fatal(err)
	}
	s := st.subs["1"]
	if s.QuoteNumber != "Q-1001" || s.QuoteExpiry != subscription.MustDate("2027-04-30") || s.QuoteURL != "https://quotes.example/q/1001?t=ab" ||
		s.ContractNumber != "CN-1" || s.Team != "Team A" || s.AutorenewDate != subscription.MustDate("2027-05-31") {
		t.Errorf("stored %+v", s)
	}
	if rep.Rejected != 1 || len(rep.Rejections) != 2 || rep.Rejections[0].Field != "quote_expiry" || rep.Rejections[1].Field != "quote_url" ||
		!strings.Contains(rep.Rejections[1].Reason, "is not a link: give the quote's full address, starting https://") {
		t.Errorf("rejections %+v", rep.Rejections)
	}
}

// TestImportLargeWorkbookTemp: a workbook is unpacked under TempDir, and
// nothing of it is left there after the import.
func TestImportWorkbookLeavesNoFiles(t *testing.T) {
	dir := t.TempDir()
	rep, err := Import(context.Background(), bytes.NewReader(vendorWorkbook(t, "Sheet1")), Options{Store: &memStore{}, TempDir: dir})
	if err != nil || rep.Created != 3 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 0 {
		t.Errorf("left in the temp dir: %v", left)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
