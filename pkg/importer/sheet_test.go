package importer

import (
	"archive/zip"
	"bytes"
	"context"
	"testing"

	"github.com/xuri/excelize/v2"

	"renewals/pkg/subscription"
)

// rawWorkbook zips SpreadsheetML parts as given, the way other producers
// than Excel write them.
func rawWorkbook(t *testing.T, parts map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range []string{"[Content_Types].xml", "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/sharedStrings.xml", "xl/worksheets/data.xml"} {
		body, ok := parts[name]
		if !ok {
			continue
		}
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestSheetScannerForms: the worksheet reader against the forms the format
// allows: a namespace prefix, shared strings with rich-text and phonetic
// runs, inline strings, entities and character references, cells left out
// (sparse rows), self-closing cells and rows, a formula with its cached
// value, comments, an absolute relationship target.
func TestSheetScannerForms(t *testing.T) {
	in := rawWorkbook(t, map[string]string{
		"[Content_Types].xml": `<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`,
		"xl/workbook.xml": `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<x:workbook xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<x:sheets><x:sheet name="Subs &amp; more" sheetId="1" r:id="rId7"/></x:sheets></x:workbook>`,
		"xl/_rels/workbook.xml.rels": `<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId7" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="/xl/worksheets/data.xml"/></Relationships>`,
		"xl/sharedStrings.xml": `<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="4" uniqueCount="4">
<si><t>Subscription ID</t></si><si><t xml:space="preserve">End Date</t></si>
<si><r><rPr><b/></rPr><t>Crème </t></r><r><t>&amp; Fils</t></r><rPh sb="0" eb="1"><t>ignored</t></rPh></si>
<si><t>Offering Name</t></si></sst>`,
		"xl/worksheets/data.xml": `<?xml version="1.0"?>
<x:worksheet xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><x:sheetData>
<!-- a comment <row> -->
<x:row r="1"><x:c r="A1" t="s"><x:v>0</x:v></x:c><x:c r="B1" t="s"><x:v>1</x:v></x:c><x:c r="D1" t="inlineStr"><x:is><x:t>Account Name</x:t></x:is></x:c><x:c r="E1" t="s"><x:v>3</x:v></x:c></x:row>
<x:row r="2"/>
<x:row r="4" spans="1:5"><x:c r="A4" t="str"><x:f>TEXT(1,"0")</x:f><x:v>120001</x:v></x:c><x:c r="B4" s="3"><x:v>46112</x:v></x:c><x:c r="C4"/><x:c r="D4" t="s"><x:v>2</x:v></x:c><x:c r="E4" t="inlineStr"><x:is><x:r><x:t>Auto&#x43;AD </x:t></x:r><x:r><x:t xml:space="preserve">&lt;LT&gt;</x:t></x:r></x:is></x:c></x:row>
<x:row><x:c t="inlineStr"><x:is><x:t>120002</x:t></x:is></x:c><x:c><x:v>46112.75</x:v></x:c></x:row>
</x:sheetData></x:worksheet>`,
	})
	st := &memStore{}
	rep, err := Import(context.Background(), bytes.NewReader(in), Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 2 || rep.Sheet != "Subs & more" || len(rep.UnknownColumns) != 0 {
		t.Fatalf("report %+v", rep)
	}
	a, b := st.subs["120001"], st.subs["120002"]
	if a.EndDate != subscription.MustDate("2026-03-31") || a.CustomerName != "Crème & Fils" || a.Product != "AutoCAD <LT>" {
		t.Errorf("row 4: %+v", a)
	}
	if b.EndDate != subscription.MustDate("2026-03-31") {
		t.Errorf("row 5 (no r attributes): %+v", b)
	}
	if rep.Rejected != 0 {
		t.Errorf("rejections %+v", rep.Rejections)
	}

	// A broken worksheet is told as such, with the row it broke after.
	broken := rawWorkbook(t, map[string]string{
		"xl/workbook.xml":            `<workbook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="S" r:id="r1"/></sheets></workbook>`,
		"xl/_rels/workbook.xml.rels": `<Relationships><Relationship Id="r1" Target="worksheets/data.xml"/></Relationships>`,
		"xl/worksheets/data.xml":     `<worksheet><sheetData><row r="1"><c t="inlineStr"><is><t>subscription_id</t></is></c><c t="inlineStr"><is><t>end_date</t></is></c></row><row r="2"><c t="s"><v>9</v></c></row></sheetData></worksheet>`,
	})
	_, err = Import(context.Background(), bytes.NewReader(broken), Options{Store: &memStore{}})
	if fe, ok := err.(*FileError); !ok || fe.Reason != `sheet "S" cannot be read after row 1 (the worksheet's XML is not well formed): open the workbook in Excel, save it again and import that` {
		t.Errorf("broken sheet: %v", err)
	}
}

// TestSheetScannerExcelizeCells: what excelize writes cell by cell (shared
// strings, rich text, numbers, dates, a formula) reads back as written.
func TestSheetScannerExcelizeCells(t *testing.T) {
	f := excelize.NewFile()
	defer f.Close()
	f.SetSheetRow("Sheet1", "A1", &[]any{"Subscription ID", "End Date", "Seat Quantity", "Account Name", "Offering Name", "Term"})
	f.SetCellValue("Sheet1", "A2", "130001")
	f.SetCellValue("Sheet1", "B2", day("2027-05-31"))
	f.SetCellValue("Sheet1", "C2", 12)
	f.SetCellRichText("Sheet1", "D2", []excelize.RichTextRun{{Text: "Zoë "}, {Text: "& Co", Font: &excelize.Font{Bold: true}}})
	f.SetCellValue("Sheet1", "E2", "Revit <2027> \"LT\"")
	f.SetCellFormula("Sheet1", "F2", `="12 "&"months"`)
	f.SetCellValue("Sheet1", "F2", "12 months") // the cached value
	var b bytes.Buffer
	if _, err := f.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	st := &memStore{}
	rep, err := Import(context.Background(), &b, Options{Store: st})
	if err != nil || rep.Created != 1 {
		t.Fatalf("report %+v, err %v", rep, err)
	}
	s := st.subs["130001"]
	if s.EndDate != subscription.MustDate("2027-05-31") || s.Seats == nil || *s.Seats != 12 || s.CustomerName != "Zoë & Co" || s.Product != `Revit <2027> "LT"` {
		t.Errorf("stored %+v", s)
	}
}
