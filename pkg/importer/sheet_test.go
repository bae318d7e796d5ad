package importer

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"renewals/pkg/subscription"
)

// packageRels is the package's relationships part, _rels/.rels, which
// every workbook has: it names the workbook part.
const packageRels = `<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`

// rawWorkbook zips SpreadsheetML parts as given, the way other producers
// than Excel write them, with the package's relationships unless given.
func rawWorkbook(t *testing.T, parts map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range []string{"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/sharedStrings.xml", "xl/worksheets/data.xml"} {
		body, ok := parts[name]
		if name == "_rels/.rels" && !ok {
			body, ok = packageRels, true
		}
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

// TestWorkbookForms: a workbook in the forms the format allows: a namespace prefix, shared strings with rich-text and phonetic
// runs, inline strings, entities and character references, cells left out
// (sparse rows), self-closing cells and rows, a formula with its cached
// value, comments, an absolute relationship target.
func TestWorkbookForms(t *testing.T) {
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

	// A workbook cut off (an upload that broke off) is told as such.
	_, err = Import(context.Background(), bytes.NewReader(in[:len(in)-40]), Options{Store: &memStore{}})
	if fe, ok := err.(*FileError); !ok || !strings.HasPrefix(fe.Reason, "the workbook cannot be read (zip: not a valid zip file): open it in Excel, save it again as .xlsx") {
		t.Errorf("cut-off workbook: %v", err)
	}

	// A worksheet broken in a row is told with the row it broke after,
	// and the rows before it are kept.
	const ns = `xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"`
	broken := rawWorkbook(t, map[string]string{
		"xl/workbook.xml":            `<workbook ` + ns + `><sheets><sheet name="S" sheetId="1" r:id="r1"/></sheets></workbook>`,
		"xl/_rels/workbook.xml.rels": `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="r1" Target="worksheets/data.xml"/></Relationships>`,
		"xl/worksheets/data.xml": `<worksheet ` + ns + `><sheetData><row r="1"><c t="inlineStr"><is><t>subscription_id</t></is></c><c t="inlineStr"><is><t>end_date</t></is></c></row>` +
			`<row r="2"><c t="inlineStr"><is><t>1</t></is></c><c><v>46112</v></c></row><row r="3"><c r="A!3"><v>2</v></c></row></sheetData></worksheet>`,
	})
	st = &memStore{}
	rep, err = Import(context.Background(), bytes.NewReader(broken), Options{Store: st})
	if fe, ok := err.(*FileError); !ok || !strings.HasPrefix(fe.Reason, `sheet "S" cannot be read after row 2 (`) || !strings.HasSuffix(fe.Reason, `): open the workbook in Excel, save it again and import that`) {
		t.Errorf("broken sheet: %v", err)
	}
	if rep.Created != 1 || st.subs["1"].EndDate != subscription.MustDate("2026-03-31") {
		t.Errorf("the row before the break: report %+v, stored %+v", rep, st.subs)
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

// TestWorkbookUnpackBounds: a workbook whose parts would unpack to more
// than the import allows (a zip bomb, or an export too large for a
// workbook) is refused from its zip directory, before anything is
// unpacked, in one sentence, and leaves no files behind.
func TestWorkbookUnpackBounds(t *testing.T) {
	// bomb writes a workbook whose part name says it unpacks to size
	// bytes; the directory is all that is read before the refusal.
	bomb := func(name string, size uint64) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, err := zw.Create("[Content_Types].xml")
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(`<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`))
		raw, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Store, CompressedSize64: 4, UncompressedSize64: size})
		if err != nil {
			t.Fatal(err)
		}
		raw.Write([]byte("<a/>"))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for _, tc := range []struct {
		name string
		size uint64
		want string
	}{
		{"xl/sharedStrings.xml", 200 << 20, "the workbook's shared texts unpack to more than 128 MB: save the sheet as CSV UTF-8 and import that"},
		{"xl/worksheets/sheet1.xml", 5 << 30, "the workbook's parts unpack to more than 4096 MB: save the sheet as CSV UTF-8 and import that"},
		{"xl/media/image1.xml", 200 << 20, "the workbook's parts besides its sheets unpack to more than 128 MB: save the sheet as CSV UTF-8 and import that"},
	} {
		dir := t.TempDir()
		_, err := Import(context.Background(), bytes.NewReader(bomb(tc.name, tc.size)), Options{Store: &memStore{}, TempDir: dir})
		if fe, ok := err.(*FileError); !ok || fe.Reason != tc.want {
			t.Errorf("%s of %d MB: %v\nwant: %s", tc.name, tc.size>>20, err, tc.want)
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Errorf("left in the temp dir: %v", left)
		}
	}
}

// TestWorkbookBrokenLeavesNoFiles: a workbook that breaks while excelize
// unpacks it (a part in a compression it cannot read, after a sheet large
// enough to be unpacked to a file) is refused, and nothing of it is left in
// TempDir.
func TestWorkbookBrokenLeavesNoFiles(t *testing.T) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, p := range [][2]string{
		{"[Content_Types].xml", `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`},
		{"_rels/.rels", packageRels},
		{"xl/worksheets/sheet1.xml", `<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>` + strings.Repeat(" ", maxPartInMemory+1) + `</sheetData></worksheet>`},
	} {
		w, err := zw.Create(p[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(p[1]))
	}
	// A part compressed with bzip2 (method 12), which archive/zip cannot read.
	raw, err := zw.CreateRaw(&zip.FileHeader{Name: "xl/workbook.xml", Method: 12, CompressedSize64: 11, UncompressedSize64: 11})
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("<workbook/>"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = Import(context.Background(), bytes.NewReader(b.Bytes()), Options{Store: &memStore{}, TempDir: dir})
	if fe, ok := err.(*FileError); !ok || !strings.HasPrefix(fe.Reason, "the workbook cannot be read (zip: unsupported compression algorithm): open it in Excel") {
		t.Errorf("Import: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("left in the temp dir: %v", left)
	}
}

// TestWorkbookSharedStringsBounds: what excelize holds for a shared-strings
// table grows with its number of texts, so a small table of many short
// texts is bounded by their number: one of more than maxSharedStringsInMemory
// texts is read from a file, and reads as the texts it holds; one of more
// than maxSharedStrings is refused in one sentence and leaves no files
// behind.
func TestWorkbookSharedStringsBounds(t *testing.T) {
	const ns = `xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"`
	book := func(texts int) []byte {
		var sst strings.Builder
		sst.WriteString(`<?xml version="1.0" encoding="UTF-8"?><sst ` + ns + `><si><t>subscription_id</t></si><si><t>end_date</t></si>`)
		for range texts - 3 {
			sst.WriteString(`<si/>`)
		}
		sst.WriteString(`<si><t>140001</t></si></sst>`)
		last := strconv.Itoa(texts - 1)
		return rawWorkbook(t, map[string]string{
			"xl/workbook.xml":            `<workbook ` + ns + `><sheets><sheet name="S" sheetId="1" r:id="r1"/></sheets></workbook>`,
			"xl/_rels/workbook.xml.rels": `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="r1" Target="worksheets/data.xml"/></Relationships>`,
			"xl/sharedStrings.xml":       sst.String(),
			"xl/worksheets/data.xml": `<worksheet ` + ns + `><sheetData><row r="1"><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row>` +
				`<row r="2"><c t="s"><v>` + last + `</v></c><c><v>46112</v></c></row></sheetData></worksheet>`,
		})
	}
	for _, tc := range []struct {
		texts    int
		inMemory bool // excelize's UnzipXMLSizeLimit leaves the table in memory
	}{{1000, true}, {maxSharedStringsInMemory + 1, false}} {
		in := book(tc.texts)
		spool := filepath.Join(t.TempDir(), "book.xlsx")
		if err := os.WriteFile(spool, in, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(spool)
		if err != nil {
			t.Fatal(err)
		}
		limit, err := checkUnpacked(f, int64(len(in)))
		f.Close()
		if err != nil || (limit == maxPartInMemory) != tc.inMemory {
			t.Errorf("%d texts: UnzipXMLSizeLimit %d, %v; want the table in memory: %v", tc.texts, limit, err, tc.inMemory)
		}
		st := &memStore{}
		rep, err := Import(context.Background(), bytes.NewReader(in), Options{Store: st, TempDir: t.TempDir()})
		if err != nil || rep.Created != 1 || st.subs["140001"].EndDate != subscription.MustDate("2026-03-31") {
			t.Errorf("%d texts: report %+v, err %v, stored %+v", tc.texts, rep, err, st.subs)
		}
	}
	dir := t.TempDir()
	_, err := Import(context.Background(), bytes.NewReader(book(maxSharedStrings+1)), Options{Store: &memStore{}, TempDir: dir})
	if fe, ok := err.(*FileError); !ok || fe.Reason != "the workbook holds more than 1500000 different texts: save the sheet as CSV UTF-8 and import that" {
		t.Errorf("%d texts: %v", maxSharedStrings+1, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("left in the temp dir: %v", left)
	}
}
