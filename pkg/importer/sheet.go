package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xuri/excelize/v2"
)

// An .xlsx workbook is read with excelize: the body is copied to a
// temporary file (a zip needs random access), excelize unpacks a large
// worksheet to a temporary file of its own, and its rows are then read one
// at a time (Rows), never the whole sheet.

// maxUnzipBytes caps what the parts of one workbook may unpack to, so that
// a small zip cannot fill the disk.
const maxUnzipBytes = 8 << 30

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

func (rd *Reader) startXLSX(br *bufio.Reader, o ReaderOptions) error {
	spool, err := os.CreateTemp(o.TempDir, "renewals-import-*.xlsx")
	if err != nil {
		return fmt.Errorf("read workbook: %w", err)
	}
	defer os.Remove(spool.Name())
	_, err = io.Copy(spool, br)
	if cerr := spool.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return readErr(err)
	}
	wb, err := excelize.OpenFile(spool.Name(), excelize.Options{TmpDir: o.TempDir, UnzipSizeLimit: maxUnzipBytes})
	if err != nil {
		if errors.Is(err, excelize.ErrWorkbookPassword) || strings.Contains(err.Error(), "encrypt") {
			return &FileError{Reason: "the workbook is protected by a password: save a copy without one and import that"}
		}
		return &FileError{Reason: fmt.Sprintf("the workbook cannot be read (%v): open it in Excel, save it again as .xlsx and import that", err)}
	}
	rd.book = wb
	sheets := wb.GetSheetList()
	sheet := o.Sheet
	switch {
	case len(sheets) == 0:
		return &FileError{Reason: "the workbook has no sheets: give a workbook whose first sheet holds the subscriptions"}
	case sheet == "":
		sheet = sheets[0]
	default:
		found := false
		for _, s := range sheets {
			if strings.EqualFold(s, sheet) {
				sheet, found = s, true
				break
			}
		}
		if !found {
			return &FileError{Reason: fmt.Sprintf("the workbook has no sheet named %q: its sheets are %s; name one with --sheet", truncate(o.Sheet, 40), strings.Join(sheets, ", "))}
		}
	}
	rd.sheet = sheet
	rows, err := wb.Rows(sheet)
	if err != nil {
		return &FileError{Reason: fmt.Sprintf("sheet %q cannot be read (%v): open the workbook in Excel, save it again and import that", sheet, err)}
	}
	rd.rows = rows
	// The header is the first row that is not empty.
	for {
		cells, err := rd.nextCells()
		if err == io.EOF {
			return &FileError{Reason: fmt.Sprintf("sheet %q is empty: its first row must be a header row naming the columns, including subscription_id and end_date", sheet)}
		}
		if err != nil {
			return err
		}
		if !blankCells(cells) {
			return rd.mapHeader(cells, o.Map)
		}
	}
}

// nextCells returns the next row's raw cell values (a date cell as its
// serial number, not as the sheet formats it), with its line in rd.line.
func (rd *Reader) nextCells() ([]string, error) {
	if !rd.rows.Next() {
		if err := rd.rows.Error(); err != nil {
			return nil, &FileError{Line: rd.line + 1, Reason: fmt.Sprintf("sheet %q cannot be read from row %d on (%v): open the workbook in Excel, save it again and import that", rd.sheet, rd.line+1, err)}
		}
		return nil, io.EOF
	}
	rd.line++
	cells, err := rd.rows.Columns(excelize.Options{RawCellValue: true})
	if err != nil {
		return nil, &FileError{Line: rd.line, Reason: fmt.Sprintf("row %d of sheet %q cannot be read (%v): open the workbook in Excel, save it again and import that", rd.line, rd.sheet, err)}
	}
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
	for {
		cells, err := rd.nextCells()
		if err != nil {
			return Record{}, err
		}
		if blankCells(cells) {
			continue
		}
		for i, v := range cells {
			if i < len(rd.header) && rd.header[i] != "" {
				rd.fields[rd.header[i]] = v
			}
		}
		return Record{Line: rd.line}, nil
	}
}
