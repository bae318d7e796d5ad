package importer

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

// xlsx returns a small zip laid out as Excel lays out a workbook.
func xlsx(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range []string{"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/worksheets/sheet1.xml"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("<?xml version=\"1.0\"?><x/>"))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func utf16LE(s string) []byte {
	b := []byte{0xFF, 0xFE}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

// TestImportNamesTheWrongFile: a file that is not CSV UTF-8 with commas is
// refused in one sentence that says what it is and how to save it, whatever
// the format it was sent as, and nothing of it is stored.
func TestImportNamesTheWrongFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		format Format
		want   string
	}{
		{"xlsx", xlsx(t), FormatCSV, "this is an Excel workbook (.xlsx), not CSV: name the file .xlsx (or give --format xlsx) and import it again"},
		{"xlsx sent as JSON", xlsx(t), FormatJSON, "this is an Excel workbook (.xlsx), not JSON"},
		{"broken workbook", xlsx(t), FormatAuto, "the workbook cannot be read"},
		{"csv sent as xlsx", []byte("subscription_id,end_date\n1,2027-05-31\n"), FormatXLSX, "this is not an Excel workbook (.xlsx)"},
		{"other zip", []byte("PK\x03\x04\x14\x00\x00\x00notes.txt"), FormatAuto, "this is a zip archive, not CSV"},
		{"xls", []byte("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\x00\x00\x00\x00"), FormatCSV, "this is an Excel 97-2003 workbook (.xls)"},
		{"pdf", []byte("%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n"), FormatCSV, "this is a PDF, not CSV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memStore{}
			rep, err := Import(context.Background(), bytes.NewReader(tc.in), Options{Store: st, Format: tc.format})
			fe, ok := errors.AsType[*FileError](err)
			if !ok || !strings.Contains(fe.Reason, tc.want) {
				t.Fatalf("Import: %v, want a file error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "missing required") || strings.Contains(err.Error(), "quote") {
				t.Errorf("Import: %q, want one sentence about the file alone", err)
			}
			if len(st.subs) != 0 || rep.Rows != 0 {
				t.Errorf("stored %d subscriptions, read %d rows", len(st.subs), rep.Rows)
			}
		})
	}
}

// TestImportCommaFilesAreNotMistaken: semicolons and tabs inside the
// fields of a comma-separated file leave it alone, and a header that lacks
// a column still says which.
func TestImportCommaFilesAreNotMistaken(t *testing.T) {
	in := "subscription_id,end_date,sa_emails,customer_name\n" +
		"1,2027-05-31,a@x.example;b@x.example,\"Smith; Jones; Partners\"\n"
	rep, _, err := importString(t, in)
	if err != nil || rep.Created != 1 || rep.Rejected != 0 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	_, _, err = importString(t, "subscription_id;note\n1;x\n")
	if err == nil || !strings.Contains(err.Error(), "missing required column end_date") {
		t.Errorf("semicolon header without end_date: %v, want the missing column named", err)
	}
	_, _, err = importString(t, "subscription_id,notes;more\n1,x\n")
	if err == nil || !strings.Contains(err.Error(), "missing required column end_date") {
		t.Errorf("comma header without end_date: %v, want the missing column named", err)
	}
}

func importString(t *testing.T, in string) (Report, *memStore, error) {
	t.Helper()
	st := &memStore{}
	rep, err := Import(context.Background(), strings.NewReader(in), Options{Store: st})
	return rep, st, err
}

// TestImportWindows1252 imports a file saved as Windows-1252: every row is
// stored with its text converted, and the report says how it was read.
func TestImportWindows1252(t *testing.T) {
	in := "subscription_id,end_date,customer_name,cm_name\n" +
		"1,2027-05-31,Acme Ltd,Ann Smith\n" +
		"2,2027-05-31,M\xFCller GmbH,J\xFCrgen M\xFCller\n" + // ü
		"3,2027-05-31,Caf\xE9 Ltd,Zo\xEB\n" + // é, ë
		"4,2027-05-31,Beta Ltd,Bob\n" +
		"5,31/05/2027,\xA3 Shop,Pat\n" + // £, and a date day first
		"6,2027-05-31,Gamma Ltd,\x93Quoted\x94\n" + // curly quotes
		"7,2027-05-31,Delta Ltd,Dee\n"
	rep, st, err := importString(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 7 || rep.Created != 7 || rep.Rejected != 0 || rep.Encoding != EncodingWindows1252 {
		t.Errorf("report %+v, want 7 rows, 7 created, read as Windows-1252", rep)
	}
	for id, want := range map[string]string{"2": "Jürgen Müller", "3": "Zoë", "6": "\u201cQuoted\u201d"} {
		if got := st.subs[id].ContractManager.Name; got != want {
			t.Errorf("subscription %s: cm_name %q, want %q", id, got, want)
		}
	}
	if got := st.subs["5"].CustomerName; got != "£ Shop" {
		t.Errorf("customer_name %q, want £ Shop", got)
	}
	if !strings.Contains(rep.Text(), "read as Windows-1252 text\n") {
		t.Errorf("report text does not say the encoding:\n%s", rep.Text())
	}

	// UTF-8 first, then a byte that is not: the file is UTF-8 and the row
	// with the stray byte is rejected in one sentence for the file.
	rep, _, err = importString(t, "subscription_id,end_date,customer_name\n1,2027-05-31,Caf\u00e9\n2,2027-05-31,Caf\xE9\n")
	if err != nil || rep.Created != 1 || len(rep.Rejections) != 1 || !strings.HasPrefix(rep.Rejections[0].Reason, "this file is not UTF-8 (it looks like Windows-1252") {
		t.Errorf("report %+v, err %v", rep, err)
	}

	// Bytes that Windows-1252 leaves undefined: no guess at the encoding.
	rep, _, err = importString(t, "subscription_id,end_date,customer_name\n1,2027-05-31,a\x81b\n")
	if err != nil || len(rep.Rejections) != 1 || !strings.HasPrefix(rep.Rejections[0].Reason, "this file is not UTF-8: save it as CSV UTF-8") ||
		!strings.Contains(rep.Rejections[0].Reason, "the row with characters that cannot be read (line 2) was not imported") {
		t.Errorf("report %+v, err %v", rep, err)
	}
}
