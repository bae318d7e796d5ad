package importer

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// An .xlsx workbook is a zip of XML parts (ECMA-376, SpreadsheetML). The
// body is copied to a temporary file (a zip needs random access); the small
// parts (the workbook's sheet list and its relationships) are decoded with
// encoding/xml; the worksheet is then streamed out of the zip one row at a
// time, never unpacked whole.
//
// The worksheet's rows are read by sheetScanner rather than by
// encoding/xml's decoder or excelize's Rows, because of what they cost in
// the import of a million-row workbook, measured on the development
// machine (2 cores) for rows of 20 cells: excelize's Rows().Columns() 49 µs
// of CPU a row and encoding/xml's RawToken alone 24 µs, against a budget of
// 33 µs a row for the whole import at 30,000 rows/s (the CSV path takes
// about 10). The scanner reads only the few elements of sheetData (row, c,
// v, is, t) and leaves entity decoding to html.UnescapeString; the tests
// check it against workbooks written by excelize.

// maxSharedStrings caps the shared-string table of a workbook, which must
// be held in memory while its sheet is read.
const maxSharedStrings = 4 << 20

// isWorkbook reports whether the input starts like an .xlsx: a zip whose
// first entries name its parts, xl/...
func isWorkbook(br *bufio.Reader) bool {
	head, _ := br.Peek(4)
	if !bytes.Equal(head, []byte("PK\x03\x04")) {
		return false
	}
	more, _ := br.Peek(4096)
	return bytes.Contains(more, []byte("xl/")) || bytes.Contains(more, []byte("[Content_Types].xml"))
}

// workbook is an open .xlsx.
type workbook struct {
	spool *os.File
	zip   *zip.Reader
	part  io.ReadCloser // the worksheet being read
	ahead *ahead        // its rows, once the header was read
}

func (w *workbook) close() error {
	if w.ahead != nil {
		w.ahead.close()
		w.ahead = nil
	}
	var errs []error
	if w.part != nil {
		errs = append(errs, w.part.Close())
	}
	if w.spool != nil {
		errs = append(errs, w.spool.Close(), os.Remove(w.spool.Name()))
	}
	w.part, w.spool = nil, nil
	return errors.Join(errs...)
}

func brokenWorkbook(err error) *FileError {
	return &FileError{Reason: fmt.Sprintf("the workbook cannot be read (%v): open it in Excel, save it again as .xlsx and import that", err)}
}

func (rd *Reader) startXLSX(br *bufio.Reader, o ReaderOptions) error {
	spool, err := os.CreateTemp(o.TempDir, "renewals-import-*.xlsx")
	if err != nil {
		return fmt.Errorf("read workbook: %w", err)
	}
	rd.book = &workbook{spool: spool}
	size, err := io.Copy(spool, br)
	if err != nil {
		return readErr(err)
	}
	zr, err := zip.NewReader(spool, size)
	if err != nil {
		return brokenWorkbook(err)
	}
	rd.book.zip = zr
	sheets, err := sheetsOf(zr)
	if err != nil {
		return err
	}
	var names []string
	var sheet *sheetEntry
	for i, s := range sheets {
		names = append(names, s.name)
		if sheet == nil && (o.Sheet == "" || strings.EqualFold(s.name, o.Sheet)) {
			sheet = &sheets[i]
		}
	}
	switch {
	case len(sheets) == 0:
		return &FileError{Reason: "the workbook has no sheets: give a workbook whose first sheet holds the subscriptions"}
	case sheet == nil:
		return &FileError{Reason: fmt.Sprintf("the workbook has no sheet named %q: its sheets are %s; name one with --sheet", truncate(o.Sheet, 40), strings.Join(names, ", "))}
	}
	rd.sheet = sheet.name
	strs, err := sharedStrings(zr)
	if err != nil {
		return err
	}
	f := findPart(zr, sheet.part)
	if f == nil {
		return brokenWorkbook(fmt.Errorf("sheet %q has no part %s", sheet.name, sheet.part))
	}
	part, err := f.Open()
	if err != nil {
		return brokenWorkbook(err)
	}
	rd.book.part = part
	rd.rows = &sheetScanner{r: bufio.NewReaderSize(part, 256<<10), strs: strs}
	// The header is the first row that is not empty.
	for {
		cells, err := rd.nextCells()
		if err == io.EOF {
			return &FileError{Reason: fmt.Sprintf("sheet %q is empty: its first row must be a header row naming the columns, including subscription_id and end_date", rd.sheet)}
		}
		if err != nil {
			return err
		}
		if !blankCells(cells) {
			if err := rd.mapHeader(cells, o.Map); err != nil {
				return err
			}
			rd.book.ahead = readAhead(rd.rows, rd.sheet, rd.line)
			return nil
		}
	}
}

// sheetRows is a batch of rows read ahead: each row's number and cells.
type sheetRows struct {
	lines []int
	cells [][]string
	err   error // after the last row: io.EOF or why reading stopped
}

// readAhead reads the sheet's rows on a goroutine of their own, a batch at
// a time, so that reading the workbook overlaps validating what it read.
// Stop it by closing stop; done is closed when it has returned.
type ahead struct {
	batches chan sheetRows
	stop    chan struct{}
	done    chan struct{}
	cur     sheetRows
}

const aheadBatch = 256

func readAhead(sc *sheetScanner, sheet string, line int) *ahead {
	a := &ahead{batches: make(chan sheetRows, 4), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			var b sheetRows
			for len(b.lines) < aheadBatch && b.err == nil {
				cells, row, err := sc.next()
				if err != nil {
					if err != io.EOF {
						err = &FileError{Line: line + 1, Reason: fmt.Sprintf("sheet %q cannot be read after row %d (%v): open the workbook in Excel, save it again and import that", sheet, line, err)}
					}
					b.err = err
					break
				}
				line = row
				if blankCells(cells) {
					continue
				}
				b.lines = append(b.lines, row)
				b.cells = append(b.cells, slices.Clone(cells))
			}
			select {
			case a.batches <- b:
			case <-a.stop:
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
	return a
}

// next returns the next row read ahead.
func (a *ahead) next() (int, []string, error) {
	for len(a.cur.lines) == 0 {
		if a.cur.err != nil {
			return 0, nil, a.cur.err
		}
		a.cur = <-a.batches
	}
	line, cells := a.cur.lines[0], a.cur.cells[0]
	a.cur.lines, a.cur.cells = a.cur.lines[1:], a.cur.cells[1:]
	return line, cells, nil
}

func (a *ahead) close() {
	close(a.stop)
	<-a.done
}

// sheetEntry is a sheet of the workbook and the zip entry of its XML.
type sheetEntry struct{ name, part string }

// sheetsOf lists the workbook's worksheets in their order, from
// xl/workbook.xml and its relationships.
func sheetsOf(zr *zip.Reader) ([]sheetEntry, error) {
	var wb struct {
		Sheets []struct {
			Name string `xml:"name,attr"`
			ID   string `xml:"http://schemas.openxmlformats.org/officeDocument/2006/relationships id,attr"`
		} `xml:"sheets>sheet"`
	}
	var rels struct {
		Rels []struct {
			ID     string `xml:"Id,attr"`
			Target string `xml:"Target,attr"`
		} `xml:"Relationship"`
	}
	if err := decodePart(zr, "xl/workbook.xml", &wb); err != nil {
		return nil, err
	}
	if err := decodePart(zr, "xl/_rels/workbook.xml.rels", &rels); err != nil {
		return nil, err
	}
	target := map[string]string{}
	for _, r := range rels.Rels {
		t := r.Target
		if strings.HasPrefix(t, "/") {
			t = strings.TrimPrefix(t, "/")
		} else {
			t = path.Join("xl", t)
		}
		target[r.ID] = t
	}
	var out []sheetEntry
	for _, s := range wb.Sheets {
		if t, ok := target[s.ID]; ok && strings.Contains(t, "worksheets/") {
			out = append(out, sheetEntry{s.Name, t})
		}
	}
	return out, nil
}

// findPart returns the zip entry of a part, matched without case as the
// format allows, or nil.
func findPart(zr *zip.Reader, name string) *zip.File {
	for _, f := range zr.File {
		if strings.EqualFold(strings.TrimPrefix(strings.ReplaceAll(f.Name, `\`, "/"), "/"), name) {
			return f
		}
	}
	return nil
}

// decodePart decodes a small XML part with encoding/xml.
func decodePart(zr *zip.Reader, name string, v any) error {
	f := findPart(zr, name)
	if f == nil {
		return brokenWorkbook(fmt.Errorf("it has no %s", name))
	}
	r, err := f.Open()
	if err != nil {
		return brokenWorkbook(err)
	}
	defer r.Close()
	if err := xml.NewDecoder(io.LimitReader(r, 64<<20)).Decode(v); err != nil {
		return brokenWorkbook(fmt.Errorf("%s: %w", name, err))
	}
	return nil
}

// sharedStrings reads xl/sharedStrings.xml, the text of cells of type s:
// each si item's text (its t, or the t of each of its runs r), leaving out
// phonetic runs (rPh).
func sharedStrings(zr *zip.Reader) ([]string, error) {
	f := findPart(zr, "xl/sharedStrings.xml")
	if f == nil {
		return nil, nil
	}
	r, err := f.Open()
	if err != nil {
		return nil, brokenWorkbook(err)
	}
	defer r.Close()
	sc := &sheetScanner{r: bufio.NewReaderSize(r, 64<<10)}
	var out []string
	for {
		name, _, _, err := sc.tag()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, brokenWorkbook(fmt.Errorf("xl/sharedStrings.xml: %w", err))
		}
		if string(name) == "si" {
			s, err := sc.text("si")
			if err != nil {
				return nil, brokenWorkbook(fmt.Errorf("xl/sharedStrings.xml: %w", err))
			}
			if len(out) >= maxSharedStrings {
				return nil, &FileError{Reason: fmt.Sprintf("the workbook holds more than %d different texts: save the sheet as CSV UTF-8 and import that", maxSharedStrings)}
			}
			out = append(out, s)
		}
	}
}

// sheetScanner reads the rows of a worksheet's sheetData: each row's cells
// by column, with their raw values (a number as written, a date as its
// serial number, a shared string as its text).
type sheetScanner struct {
	r       *bufio.Reader
	strs    []string
	cells   []string
	buf     []byte // a tag longer than r's buffer
	scratch []byte // the text being read
	row     int    // the last row's number
	at      bool   // the '<' of the next tag was taken
}

// errSheet is a worksheet that is not well formed where the scanner looks.
var errSheet = errors.New("the worksheet's XML is not well formed")

// tag reads up to and including the next element tag and returns its
// local name (without a namespace prefix; "/name" for an end tag), its
// attributes' raw text, and whether it closes itself. Text, comments,
// processing instructions and declarations before it are skipped. The
// slices are valid until the next call.
func (sc *sheetScanner) tag() (name []byte, attrs []byte, empty bool, err error) {
	for {
		if sc.at {
			sc.at = false
		} else if _, err := sc.r.ReadSlice('<'); err != nil {
			if err == bufio.ErrBufferFull {
				continue
			}
			return nil, nil, false, err
		}
		t, err := sc.r.ReadSlice('>')
		if err == bufio.ErrBufferFull { // a tag longer than the buffer: rare
			sc.buf = append(sc.buf[:0], t...)
			for err == bufio.ErrBufferFull && len(sc.buf) <= MaxRowBytes {
				t, err = sc.r.ReadSlice('>')
				sc.buf = append(sc.buf, t...)
			}
			t = sc.buf
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				return nil, nil, false, errSheet
			}
			return nil, nil, false, io.ErrUnexpectedEOF
		}
		switch t[0] {
		case '?': // a processing instruction: may hold a '>' before its end
			if !bytes.HasSuffix(t, []byte("?>")) {
				if err := sc.skipTo("?>"); err != nil {
					return nil, nil, false, err
				}
			}
			continue
		case '!': // a comment (which may hold a '>'), a declaration
			if bytes.HasPrefix(t, []byte("!--")) && (len(t) < 6 || !bytes.HasSuffix(t, []byte("-->"))) {
				if err := sc.skipTo("-->"); err != nil {
					return nil, nil, false, err
				}
			}
			continue
		}
		t = t[:len(t)-1] // without '>'
		if len(t) > 0 && t[len(t)-1] == '/' {
			t, empty = t[:len(t)-1], true
		}
		end := bytes.IndexAny(t, " \t\r\n")
		if end < 0 {
			end = len(t)
		}
		n := t[:end]
		if i := bytes.IndexByte(n, ':'); i >= 0 { // a prefix: keep the '/' of an end tag
			if n[0] == '/' {
				n[i] = '/'
			}
			n = n[i:]
			if n[0] == ':' {
				n = n[1:]
			}
		}
		return n, t[end:], empty, nil
	}
}

// skipTo reads past the next s.
func (sc *sheetScanner) skipTo(s string) error {
	last := s[len(s)-1]
	var tail []byte
	for {
		chunk, err := sc.r.ReadSlice(last)
		tail = append(tail, chunk...)
		if len(tail) > len(s) {
			tail = tail[len(tail)-len(s):]
		}
		if err == nil && bytes.HasSuffix(tail, []byte(s)) {
			return nil
		}
		if err != nil && err != bufio.ErrBufferFull {
			return io.ErrUnexpectedEOF
		}
	}
}

// chars appends the character data up to the next '<' to dst, as it is
// written; the '<' is taken, for tag to go on from.
func (sc *sheetScanner) chars(dst []byte) ([]byte, error) {
	for {
		chunk, err := sc.r.ReadSlice('<')
		if err == nil {
			sc.at = true
			dst = append(dst, chunk[:len(chunk)-1]...)
			return dst, nil
		}
		dst = append(dst, chunk...)
		if err != bufio.ErrBufferFull {
			return dst, io.ErrUnexpectedEOF
		}
		if len(dst) > MaxRowBytes {
			return dst, errSheet
		}
	}
}

// text reads the text of the element just opened (named end), up to its
// end tag: the content of its t elements, or its own text for a t or v,
// leaving out phonetic runs (rPh).
func (sc *sheetScanner) text(end string) (string, error) {
	out := sc.scratch[:0]
	defer func() { sc.scratch = out[:0] }()
	depthPh := 0
	inT := end == "t" || end == "v"
	for {
		if inT && depthPh == 0 {
			var err error
			if out, err = sc.chars(out); err != nil {
				return "", err
			}
		}
		name, _, empty, err := sc.tag()
		if err != nil {
			return "", io.ErrUnexpectedEOF
		}
		switch n := string(name); {
		case len(n) == len(end)+1 && n[0] == '/' && n[1:] == end:
			return unescape(out), nil
		case n == "rPh" && !empty:
			depthPh++
		case n == "/rPh":
			depthPh--
		case n == "t" && !empty:
			inT = true
		case n == "/t":
			inT = false
		}
	}
}

// unescape decodes XML's entity and character references.
func unescape(b []byte) string {
	if bytes.IndexByte(b, '&') < 0 {
		return string(b)
	}
	return html.UnescapeString(string(b))
}

// attrRaw returns the value of the attribute name in raw attribute text,
// as it is written (the attributes read, r and t, hold no entities).
func attrRaw(attrs []byte, name string) ([]byte, bool) {
	for len(attrs) > 0 {
		attrs = bytes.TrimLeft(attrs, " \t\r\n")
		eq := bytes.IndexByte(attrs, '=')
		if eq < 0 {
			return nil, false
		}
		key := bytes.TrimSpace(attrs[:eq])
		rest := bytes.TrimLeft(attrs[eq+1:], " \t\r\n")
		if len(rest) == 0 || (rest[0] != '"' && rest[0] != '\'') {
			return nil, false
		}
		q := rest[0]
		endQ := bytes.IndexByte(rest[1:], q)
		if endQ < 0 {
			return nil, false
		}
		if string(key) == name {
			return rest[1 : 1+endQ], true
		}
		attrs = rest[2+endQ:]
	}
	return nil, false
}

// cellAttrs returns the values of a cell's attributes r and t, in one pass.
func cellAttrs(attrs []byte) (r, t []byte) {
	for len(attrs) > 0 {
		eq := bytes.IndexByte(attrs, '=')
		if eq < 0 {
			break
		}
		key := bytes.TrimSpace(attrs[:eq])
		rest := bytes.TrimLeft(attrs[eq+1:], " \t\r\n")
		if len(rest) == 0 || (rest[0] != '"' && rest[0] != '\'') {
			break
		}
		endQ := bytes.IndexByte(rest[1:], rest[0])
		if endQ < 0 {
			break
		}
		switch string(key) {
		case "r":
			r = rest[1 : 1+endQ]
		case "t":
			t = rest[1 : 1+endQ]
		}
		attrs = rest[2+endQ:]
	}
	return r, t
}

// column returns the 0-based column of a cell reference such as "AB12".
func column(ref []byte) (int, bool) {
	n := 0
	i := 0
	for ; i < len(ref) && i < 3; i++ {
		c := ref[i] | 0x20
		if c < 'a' || c > 'z' {
			break
		}
		n = n*26 + int(c-'a'+1)
	}
	return n - 1, i > 0
}

// maxColumns bounds a row's cells (Excel's limit is 16,384).
const maxColumns = 16384

// next returns the next row's cells, and the row's number, or io.EOF
// after the last row of sheetData.
func (sc *sheetScanner) next() ([]string, int, error) {
	for {
		name, attrs, empty, err := sc.tag()
		if err == io.EOF {
			return nil, 0, io.EOF
		}
		if err != nil {
			return nil, 0, err
		}
		switch string(name) {
		case "/sheetData":
			return nil, 0, io.EOF
		case "row":
			sc.row++
			if r, ok := attrRaw(attrs, "r"); ok {
				n, err := strconv.Atoi(string(r))
				if err != nil || n < sc.row { // rows come in ascending order
					return nil, 0, errSheet
				}
				sc.row = n
			}
			sc.cells = sc.cells[:0]
			if empty {
				return sc.cells, sc.row, nil
			}
			if err := sc.rowCells(); err != nil {
				return nil, 0, err
			}
			return sc.cells, sc.row, nil
		}
	}
}

// rowCells reads the cells of the row just opened, up to its end tag.
func (sc *sheetScanner) rowCells() error {
	for {
		name, attrs, empty, err := sc.tag()
		if err != nil {
			return io.ErrUnexpectedEOF
		}
		switch string(name) {
		case "/row":
			return nil
		case "c":
		default:
			continue
		}
		col := len(sc.cells)
		ref, typ := cellAttrs(attrs)
		if c, ok := column(ref); ok {
			col = c
		}
		if col < len(sc.cells) || col >= maxColumns {
			return errSheet
		}
		shared := string(typ) == "s"
		var val string
		if !empty {
			if val, err = sc.cell(shared); err != nil {
				return err
			}
		}
		for len(sc.cells) < col {
			sc.cells = append(sc.cells, "")
		}
		sc.cells = append(sc.cells, val)
	}
}

// cell reads the content of a cell, up to its end tag; shared says its
// value is an index into the shared strings.
func (sc *sheetScanner) cell(shared bool) (string, error) {
	var val string
	for {
		name, _, empty, err := sc.tag()
		if err != nil {
			return "", io.ErrUnexpectedEOF
		}
		switch n := string(name); {
		case n == "/c":
			if shared {
				i, err := strconv.Atoi(strings.TrimSpace(val))
				if err != nil || i < 0 || i >= len(sc.strs) {
					return "", errSheet
				}
				val = sc.strs[i]
			}
			return val, nil
		case empty:
		case n == "v":
			if val, err = sc.text("v"); err != nil {
				return "", err
			}
		case n == "is":
			if val, err = sc.text("is"); err != nil {
				return "", err
			}
		case n == "f":
			if _, err = sc.text("f"); err != nil { // the formula: its cached value is in v
				return "", err
			}
		}
	}
}

// nextCells returns the next row's cells, with its row number in rd.line.
func (rd *Reader) nextCells() ([]string, error) {
	cells, row, err := rd.rows.next()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, &FileError{Line: rd.line + 1, Reason: fmt.Sprintf("sheet %q cannot be read after row %d (%v): open the workbook in Excel, save it again and import that", rd.sheet, rd.line, err)}
	}
	rd.line = row
	return cells, nil
}

func blankCells(cells []string) bool {
	for _, c := range cells {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

func (rd *Reader) nextXLSX() (Record, error) {
	line, cells, err := rd.book.ahead.next()
	if err != nil {
		return Record{}, err
	}
	rd.line = line
	for i, v := range cells {
		if i < len(rd.header) && rd.header[i] != "" {
			rd.fields[rd.header[i]] = v
		}
	}
	return Record{Line: line}, nil
}
