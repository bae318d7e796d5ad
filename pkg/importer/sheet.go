package importer

import (
	"archive/zip"
	"bufio"
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/xuri/excelize/v2"
	"golang.org/x/net/html/charset"
)

// An .xlsx workbook is read with excelize. The body is copied to a
// temporary file (a zip needs random access, and excelize.OpenReader would
// hold the whole body in memory) in a directory of the import's own under
// TempDir; excelize opens it, unpacking a large worksheet or shared-strings
// table to a temporary file of its own in that directory, and the sheet's
// rows are then streamed (Rows, Columns), never the whole sheet. The rows
// are read a batch ahead on a goroutine of their own, so that excelize's
// XML decoding runs on one core while validation and the store's writes
// run on another.

// Bounds on what a workbook may unpack to, checked against its zip
// directory before excelize unpacks anything (archive/zip refuses a part
// that unpacks to more than its entry says), so that a small hostile zip
// can fill neither the memory nor the disk.
const (
	// maxUnpackedBytes caps all of a workbook's parts together, most of it
	// the worksheet that excelize unpacks to a temporary file: a
	// million-row export of 20 columns unpacks to about 700 MB.
	maxUnpackedBytes = 4 << 30
	// maxPartInMemory is excelize's UnzipXMLSizeLimit: a worksheet or
	// shared-strings table larger than this is unpacked to a temporary
	// file instead of held in memory.
	maxPartInMemory = 16 << 20
	// maxInMemoryBytes caps the parts that excelize holds in memory
	// (every part but the worksheets and shared strings above
	// maxPartInMemory).
	maxInMemoryBytes = 128 << 20
	// maxSharedStringsBytes caps the shared-strings table, and with it
	// the time that counting its texts takes.
	maxSharedStringsBytes = 128 << 20
	// maxSharedStrings caps the texts of the shared-strings table. What
	// excelize holds for the table depends on the number of its texts
	// more than on its size: unpacked to a file, an index of about 40
	// bytes a text, and up to 105 bytes of memory a text while the index
	// is built (5.2 million short texts in 118 MB of table took 550 MB);
	// so 1.5 million texts are about 160 MB.
	maxSharedStrings = 1_500_000
	// maxSharedStringsInMemory is the most texts of a shared-strings table
	// that excelize may decode in memory, which takes 470-590 bytes a text
	// (650,000 short texts in 15 MB of table took 290 MB; an import of
	// 40,000 rows with 325,000 texts 251 MB instead of 83), and is faster
	// than its index on a file (that import: 70 µs of CPU a row instead of
	// 103): 200,000 texts are about 95-120 MB. A table of more texts is
	// unpacked to a file whatever its size.
	maxSharedStringsInMemory = 200_000
)

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
	// dir holds every file of the import, the copy of the body and what
	// excelize unpacks: removed whole at the end, also what excelize
	// leaves behind when it fails halfway through unpacking.
	dir   string
	file  *excelize.File
	rows  *excelize.Rows
	ahead *ahead // the sheet's rows, once the header was read
}

// close releases the workbook; Reader.Close calls it once.
func (w *workbook) close() error {
	if w.ahead != nil { // first: it reads from rows
		w.ahead.close()
	}
	if w.rows != nil {
		// Close closes the unpacked worksheet's file and otherwise returns
		// Rows.Error, which reading the rows has reported already.
		w.rows.Close()
	}
	var err error
	if w.file != nil {
		err = w.file.Close() // removes excelize's temporary files
	}
	return errors.Join(err, os.RemoveAll(w.dir))
}

func brokenWorkbook(err error) *FileError {
	return &FileError{Reason: fmt.Sprintf("the workbook cannot be read (%v): open it in Excel, save it again as .xlsx and import that", err)}
}

// tooBigWorkbook is the sentence for a workbook beyond the bounds above.
func tooBigWorkbook(what string, limit int64) *FileError {
	return &FileError{Reason: fmt.Sprintf("the workbook's %s unpack to more than %d MB: save the sheet as CSV UTF-8 and import that", what, limit>>20)}
}

// checkUnpacked checks a workbook's zip directory against the bounds on
// what it may unpack to, and counts the texts of its shared-strings table
// against maxSharedStrings. It returns the UnzipXMLSizeLimit to open the
// workbook with: maxPartInMemory, or less, so that a table of more than
// maxSharedStringsInMemory texts is unpacked to a file.
func checkUnpacked(f *os.File, size int64) (xmlLimit int64, err error) {
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return 0, brokenWorkbook(err)
	}
	var all, inMemory uint64
	var sst *zip.File
	for _, p := range zr.File {
		n := p.UncompressedSize64
		all += n
		name := strings.ToLower(strings.TrimPrefix(strings.ReplaceAll(p.Name, `\`, "/"), "/"))
		switch {
		case name == "xl/sharedstrings.xml":
			if n > maxSharedStringsBytes {
				return 0, tooBigWorkbook("shared texts", maxSharedStringsBytes)
			}
			sst = p
			if n > maxPartInMemory {
				continue
			}
		case strings.HasPrefix(name, "xl/worksheets/sheet") && n > maxPartInMemory:
			continue
		}
		inMemory += n
	}
	switch {
	case all > maxUnpackedBytes:
		return 0, tooBigWorkbook("parts", maxUnpackedBytes)
	case inMemory > maxInMemoryBytes:
		return 0, tooBigWorkbook("parts besides its sheets", maxInMemoryBytes)
	}
	xmlLimit = maxPartInMemory
	if sst == nil {
		return xmlLimit, nil
	}
	texts, err := countSharedStrings(sst, maxSharedStrings)
	switch {
	case err != nil:
		return 0, brokenWorkbook(err)
	case texts > maxSharedStrings:
		return 0, &FileError{Reason: fmt.Sprintf("the workbook holds more than %d different texts: save the sheet as CSV UTF-8 and import that", maxSharedStrings)}
	case texts > maxSharedStringsInMemory:
		// excelize unpacks a table larger than its limit to a file.
		xmlLimit = min(xmlLimit, max(int64(sst.UncompressedSize64)-1, 0))
	}
	return xmlLimit, nil
}

// countSharedStrings counts the texts (si elements) of a workbook's
// shared-strings table, up to one more than limit. It decodes the table
// as excelize does (encoding/xml, the same charset reader) and, as
// excelize does, stops at the first token it cannot read: the texts
// before it are those that excelize would index.
func countSharedStrings(p *zip.File, limit int) (int, error) {
	rc, err := p.Open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	d := xml.NewDecoder(rc)
	d.CharsetReader = charset.NewReaderLabel
	n := 0
	for n <= limit {
		tok, err := d.RawToken()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "si" {
			n++
		}
	}
	return n, nil
}

func (rd *Reader) startXLSX(br *bufio.Reader, o ReaderOptions) error {
	dir, err := os.MkdirTemp(o.TempDir, "renewals-import-")
	if err != nil {
		return fmt.Errorf("read workbook: %w", err)
	}
	rd.book = &workbook{dir: dir}
	spool, err := os.CreateTemp(dir, "body-*.xlsx")
	if err != nil {
		return fmt.Errorf("read workbook: %w", err)
	}
	// Once open, excelize holds what it needs in memory or in temporary
	// files of its own: the copy of the body goes at once.
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	size, err := io.Copy(spool, br)
	if err != nil {
		return readErr(err)
	}
	xmlLimit, err := checkUnpacked(spool, size)
	if err != nil {
		return err
	}
	f, err := openWorkbook(spool.Name(), dir, xmlLimit)
	if err != nil {
		return err
	}
	rd.book.file = f
	sheets := f.GetSheetList()
	i := slices.IndexFunc(sheets, func(s string) bool { return o.Sheet == "" || strings.EqualFold(s, o.Sheet) })
	switch {
	case len(sheets) == 0:
		return &FileError{Reason: "the workbook has no sheets: give a workbook whose first sheet holds the subscriptions"}
	case i < 0:
		return &FileError{Reason: fmt.Sprintf("the workbook has no sheet named %q: its sheets are %s; name one with --sheet", truncate(o.Sheet, 40), strings.Join(sheets, ", "))}
	}
	rd.sheet = sheets[i]
	rows, err := f.Rows(rd.sheet)
	if err != nil {
		return &FileError{Reason: fmt.Sprintf("sheet %q cannot be read (%v): open the workbook in Excel, save it again and import that", rd.sheet, err)}
	}
	rd.book.rows = rows
	// The header is the first row that is not empty.
	rd.book.ahead = readAhead(rows, rd.sheet)
	_, head, err := rd.book.ahead.next()
	if err == io.EOF {
		return &FileError{Reason: fmt.Sprintf("sheet %q is empty: its first row must be a header row naming the columns, including subscription_id and end_date", rd.sheet)}
	}
	if err != nil {
		return err
	}
	return rd.mapHeader(head, o.Map)
}

// openWorkbook opens the workbook at path with excelize, cell values raw
// (a date cell as its serial number, which parseDate reads, not as the
// sheet formats it; a number as written).
func openWorkbook(path, tempDir string, xmlLimit int64) (f *excelize.File, err error) {
	defer func() {
		if p := recover(); p != nil { // a workbook excelize does not expect
			f, err = nil, brokenWorkbook(fmt.Errorf("%v", p))
		}
	}()
	f, err = excelize.OpenFile(path, excelize.Options{
		RawCellValue:      true,
		TmpDir:            tempDir,
		UnzipSizeLimit:    maxUnpackedBytes,
		UnzipXMLSizeLimit: xmlLimit,
	})
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, brokenWorkbook(err)
	}
	return f, nil
}

// nextRow returns the cells of the sheet's next row, or io.EOF after the
// last. Rows.Next steps through every row number, those the sheet leaves
// out too (their cells are none).
func nextRow(rows *excelize.Rows) (cells []string, err error) {
	defer func() {
		if p := recover(); p != nil { // a worksheet excelize does not expect
			cells, err = nil, fmt.Errorf("%v", p)
		}
	}()
	if !rows.Next() {
		return nil, cmp.Or(rows.Error(), io.EOF)
	}
	return rows.Columns()
}

// rowBatch is a batch of rows read ahead: each row's number and cells.
type rowBatch struct {
	lines []int
	cells [][]string
	err   error // after the last row: io.EOF or why reading stopped
}

// ahead reads the sheet's rows that are not empty on a goroutine of their
// own, a batch at a time, so that decoding the worksheet overlaps
// validating what it decoded. Stop it by closing stop; done is closed when
// it has returned.
type ahead struct {
	batches chan rowBatch
	stop    chan struct{}
	done    chan struct{}
	cur     rowBatch
}

const aheadBatch = 256

func readAhead(rows *excelize.Rows, sheet string) *ahead {
	a := &ahead{batches: make(chan rowBatch, 4), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for row := 0; ; {
			var b rowBatch
			for len(b.lines) < aheadBatch && b.err == nil {
				cells, err := nextRow(rows)
				if err != nil {
					if err != io.EOF {
						err = &FileError{Line: row + 1, Reason: fmt.Sprintf("sheet %q cannot be read after row %d (%v): open the workbook in Excel, save it again and import that", sheet, row, err)}
					}
					b.err = err
					break
				}
				row++
				if blankCells(cells) {
					continue
				}
				b.lines = append(b.lines, row)
				b.cells = append(b.cells, cells) // Columns returns a new slice each row
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

func blankCells(cells []string) bool {
	return !slices.ContainsFunc(cells, func(c string) bool { return strings.TrimSpace(c) != "" })
}

func (rd *Reader) nextXLSX() (Record, error) {
	line, cells, err := rd.book.ahead.next()
	if err != nil {
		return Record{}, err
	}
	rd.setCells(cells)
	return Record{Line: line}, nil
}
