package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"renewals/pkg/subscription"
)

// What an operator gives the import by mistake, and the one sentence that
// says what the file is and how to save it instead: an Excel 97-2003
// workbook, a PDF, a zip that is not a workbook, text that is neither UTF-8
// nor Windows-1252. Each is told once, for the file, rather than once per
// row. (UTF-16, Windows-1252, semicolons and tabs are read: see
// decodeText and separatorOf; an .xlsx sent as CSV is told in OpenReader.)

const saveAsCSV = "save it as CSV UTF-8 (Comma delimited) and import that file"

// refuseForeign returns a *FileError when the input starts like a file that
// is not text at all (an .xls workbook, a PDF, a zip that is not an .xlsx),
// and nil otherwise, or when it cannot tell. It only peeks: nothing is
// consumed.
func refuseForeign(br *bufio.Reader) error {
	head, _ := br.Peek(8)
	var what string
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")): // not a workbook: see isWorkbook
		what = "this is a zip archive, not CSV: unpack it, and if it holds a workbook, " + saveAsCSV
	case bytes.HasPrefix(head, []byte("\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1")):
		what = "this is an Excel 97-2003 workbook (.xls), not CSV: " + saveAsCSV
	case bytes.HasPrefix(head, []byte("%PDF")):
		what = "this is a PDF, not CSV: a PDF cannot be imported; export the subscriptions from where they came from as CSV UTF-8 (Comma delimited)"
	default:
		return nil
	}
	return &FileError{Reason: what}
}

// separatorOf returns the separator of a header line that is not separated
// by commas but by semicolons or tabs (what Excel saves in much of Europe,
// and as Text or Unicode Text), or 0 when commas split it at least as well
// as either. encoding/csv reads the line each way.
func separatorOf(line []byte) rune {
	fields := func(comma rune) int {
		c := csv.NewReader(bytes.NewReader(line))
		c.Comma, c.LazyQuotes, c.FieldsPerRecord = comma, true, -1
		rec, err := c.Read()
		if err != nil {
			return 0
		}
		return len(rec)
	}
	best, most := rune(0), max(fields(','), 1)
	for _, sep := range []rune{';', '\t'} {
		if n := fields(sep); n > most {
			best, most = sep, n
		}
	}
	return best
}

// firstLine peeks at the input's first line, without its line end, up to
// MaxRowBytes; nothing is consumed.
func firstLine(br *bufio.Reader) []byte {
	for n := 512; ; n *= 2 {
		b, err := br.Peek(min(n, br.Size()))
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return bytes.TrimSuffix(b[:i], []byte("\r"))
		}
		if err != nil || n >= br.Size() {
			if err == io.EOF {
				return b
			}
			return nil // longer than the buffer, or unreadable: no guess
		}
	}
}

// notUTF8 is Validate's reason for a value that is not UTF-8. Import says it
// once for the file instead (see badEncoding).
const notUTF8 = "is not valid UTF-8 text: save the file as UTF-8"

// badEncoding gathers the rows of an import that hold text that is not
// UTF-8, to report them in one sentence.
type badEncoding struct {
	rows  int
	lines []int // the first few
	// slot is the index in Report.Rejections that holds the sentence, or -1
	// when the list was full.
	slot int
	// other is set when some value is not Windows-1252 either.
	other bool
}

// maxEncodingLines is how many lines the sentence names.
const maxEncodingLines = 5

// note records a row with a value that is not UTF-8.
func (b *badEncoding) note(line int, fields map[string]string) {
	b.rows++
	if len(b.lines) < maxEncodingLines {
		b.lines = append(b.lines, line)
	}
	for _, v := range fields {
		if !utf8.ValidString(v) && !windows1252(v) {
			b.other = true
		}
	}
}

// reason is the sentence: what the file is, how to save it, what was left
// out.
func (b *badEncoding) reason() string {
	enc := "this file is not UTF-8 (it looks like Windows-1252, what Excel saves as CSV (Comma delimited))"
	if b.other {
		enc = "this file is not UTF-8"
	}
	lines := make([]string, len(b.lines))
	for i, l := range b.lines {
		lines[i] = strconv.Itoa(l)
	}
	where := strings.Join(lines, ", ")
	if b.rows > len(b.lines) {
		where += fmt.Sprintf(" and %d more", b.rows-len(b.lines))
	}
	return fmt.Sprintf("%s: save it as CSV UTF-8 (Comma delimited) and import it again; %s with characters that cannot be read (%s %s) %s not imported",
		enc, subscription.Plural(b.rows, "the row", fmt.Sprintf("the %d rows", b.rows)), subscription.Plural(b.rows, "line", "lines"), where, subscription.Plural(b.rows, "was", "were"))
}

// windows1252 reports whether every byte of s that is not ASCII is a
// character of Windows-1252, which leaves five bytes undefined.
func windows1252(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 0x81, 0x8D, 0x8F, 0x90, 0x9D:
			return false
		}
	}
	return true
}
