package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"renewals/pkg/subscription"
)

// Format names an input format.
type Format string

// The input formats. FormatAuto sniffs the format from the first byte that
// is not white space: '[' is a JSON array, '{' is NDJSON, anything else CSV.
const (
	FormatAuto   Format = ""
	FormatCSV    Format = "csv"
	FormatJSON   Format = "json"
	FormatNDJSON Format = "ndjson"
	FormatXLSX   Format = "xlsx"
)

// ParseFormat reads a format name as a user writes it: "csv", "json",
// "ndjson" or "xlsx" in any case, or "" (and "auto") for FormatAuto. Any
// other name is an error wrapping ErrInvalidFile.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatAuto, FormatCSV, FormatJSON, FormatNDJSON, FormatXLSX:
		return f, nil
	case "auto":
		return FormatAuto, nil
	}
	return "", &FileError{Reason: fmt.Sprintf("%q is not an import format: use csv, json, ndjson or xlsx", truncate(s, 40))}
}

// MaxRowBytes is the longest row accepted: a CSV record (its bytes in the
// file, line end included), an NDJSON line or a JSON array element. A longer
// row is rejected with a reason that names the limit, and reading goes on
// with the next row. NDJSON never holds more than this of a row in memory.
// A CSV record is read whole by encoding/csv and measured after, so what
// bounds its memory is the caller's limit on the body (http.MaxBytesReader).
// A JSON array element is read whole by encoding/json too, but never more
// than MaxElementBytes of it.
const MaxRowBytes = 64 << 10

// MaxElementBytes bounds what the JSON decoder may read for one array
// element, the white space and comma before it included. An element longer
// than MaxRowBytes and no longer than this is rejected as a row; past it,
// reading stops with a *FileError that names the element's line, so that
// one element cannot hold more memory than this however large the body
// limit is.
const MaxElementBytes = 1 << 20

// Errors that callers can test for with errors.Is.
var (
	// ErrTooLarge: the body was cut off by the caller's size limit
	// (http.MaxBytesReader). The error also wraps the *http.MaxBytesError,
	// so errors.As finds the limit. The HTTP API answers 413.
	ErrTooLarge = errors.New("import too large")
	// ErrInvalidFile: the input as a whole cannot be read: a missing
	// required column, a broken header, a JSON document that is not an
	// array of objects. Every such error is a *FileError.
	ErrInvalidFile = errors.New("invalid import file")
)

// FileError is a problem with the input as a whole rather than with one
// row. It matches ErrInvalidFile with errors.Is.
type FileError struct {
	// Line is the line where the problem was found, 0 when it is not tied
	// to a line.
	Line int
	// Reason says what is wrong and what to do about it.
	Reason string
}

// Error writes "line N: reason", or just the reason when Line is 0.
func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return e.Reason
}

// Is makes errors.Is(err, ErrInvalidFile) true for every *FileError.
func (e *FileError) Is(target error) bool { return target == ErrInvalidFile }

// FieldError is one reason a row was rejected: the field at fault (empty
// when the row as a whole is at fault, e.g. too long or not parseable) and a
// reason that says what to do.
type FieldError struct {
	Field  string
	Reason string
}

// Error writes "field: reason", or just the reason for a whole-row problem.
func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Record is one row of input.
type Record struct {
	// Line is where the row starts: for CSV the physical line of the
	// record's first byte (a quoted field may span lines), for NDJSON its
	// line, for a JSON array the line of the element's opening brace.
	Line int
	// Fields maps each known field name (lower case, e.g. "end_date") that
	// the row gives to its raw, untrimmed value. Unknown fields are left
	// out, and so are JSON nulls. The map is reused: it is valid only until
	// the next call to Next. Its values may be retained.
	Fields map[string]string
	// Problems, when not empty, are why the row could not be read whole
	// (too long, malformed) or which of its JSON values were of the wrong
	// type. Such a row is rejected.
	Problems []FieldError
	// Partial is set when the row could not be read whole: Fields holds
	// only what came before the problem (perhaps nothing), so the row's
	// other fields are not worth judging.
	Partial bool
}

// knownFields are the field names of the import format, in the order that
// Validate reports problems.
var knownFields = [...]string{
	"subscription_id", "end_date", "customer_account", "customer_name", "product",
	"seats", "seats_assigned", "access_model", "term", "start_date", "status",
	"cm_name", "cm_email", "cm_phone", "pa_name", "pa_email", "sa_emails",
	"timezone", "locale", "reseller_rep", "contract_number", "autorenew_date", "team",
	"quote_number", "quote_expiry", "quote_url",
}

// fieldIndex returns the index of a known field name, or -1.
func fieldIndex(name string) int { return slices.Index(knownFields[:], name) }

// maxUnknown caps the unknown names collected from JSON input, where every
// object may bring new keys.
const maxUnknown = 100

// Reader reads records one at a time from CSV, a JSON array or NDJSON. It
// holds one row in memory at a time (plus the read buffers), never the file.
type Reader struct {
	format  Format
	next    func() (Record, error)
	fields  map[string]string // Record.Fields, reused
	named   map[string]bool   // the known fields a JSON object named, reused
	unknown map[string]bool
	err     error // sticky fatal error

	// CSV
	csv    *csv.Reader
	header []string // column index -> field name, or "" to ignore

	// JSON array
	dec   *json.Decoder
	lines *lineCounter

	// NDJSON
	br   *bufio.Reader
	line int

	// Workbook
	book  *workbook
	sheet string

	encoding func() string
	// usage: the columns are those of a usage export (see usageFields).
	usage bool
}

// ReaderOptions configure OpenReader.
type ReaderOptions struct {
	// Format of the input; FormatAuto (the default) sniffs it.
	Format Format
	// Map maps the header keys of the file's own column names (see
	// ParseMap) to fields, for a layout the import does not know. It wins
	// over the fields' own names and the vendor's.
	Map map[string]string
	// Sheet names the workbook's sheet to read; default the first.
	Sheet string
	// TempDir is where a workbook is unpacked; default os.TempDir().
	TempDir string
	// usage reads a seat-usage export instead of subscriptions.
	usage bool
}

// NewReader is OpenReader with only the format given.
func NewReader(r io.Reader, f Format) (*Reader, error) {
	return OpenReader(r, ReaderOptions{Format: f})
}

// OpenReader starts reading r. Text is read in UTF-8 (with or without a
// byte order mark), UTF-16 or Windows-1252 (see decodeText), and CRLF line
// ends work; an .xlsx workbook is read from its first sheet or o.Sheet. For
// CSV and workbooks it reads the header row at once: header names are
// matched in any order, case, spacing and punctuation aside (so
// "Subscription ID" is subscription_id), and the vendor's names are
// understood (Autodesk's "Offering Name" is product, "Seat Quantity" seats);
// CSV fields may be separated by commas, semicolons or tabs, as the header
// row tells. A missing required column (subscription_id, end_date), a
// repeated column, an unreadable header, or a file that is not what the
// format says (a workbook sent as CSV, a PDF) is an error wrapping
// ErrInvalidFile. A body cut off by http.MaxBytesReader is an error
// wrapping ErrTooLarge. The caller closes the Reader.
func OpenReader(r io.Reader, o ReaderOptions) (*Reader, error) {
	f, err := ParseFormat(string(o.Format))
	if err != nil {
		return nil, err
	}
	raw := bufio.NewReaderSize(r, MaxRowBytes+2)
	rd := &Reader{format: f, fields: make(map[string]string, len(knownFields)), named: map[string]bool{}, unknown: map[string]bool{}, usage: o.usage}
	if isWorkbook(raw) {
		if f != FormatAuto && f != FormatXLSX {
			return nil, &FileError{Reason: fmt.Sprintf("this is an Excel workbook (.xlsx), not %s: name the file .xlsx (or give --format xlsx) and import it again", strings.ToUpper(string(f)))}
		}
		rd.format, rd.encoding = FormatXLSX, fixed("")
		if err := rd.startXLSX(raw, o); err != nil {
			rd.Close()
			return nil, err
		}
		rd.next = rd.nextXLSX
		return rd, nil
	}
	if err := refuseForeign(raw); err != nil {
		return nil, err
	}
	if f == FormatXLSX {
		return nil, &FileError{Reason: "this is not an Excel workbook (.xlsx): give the file's own format, csv, json or ndjson, with --format, or name it by it"}
	}
	text, enc := decodeText(raw)
	rd.encoding = enc
	br := bufio.NewReaderSize(text, MaxRowBytes+2) // NDJSON reads whole lines from it
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xEF\xBB\xBF")) {
		br.Discard(3) // a BOM inside UTF-16
	}
	if f == FormatAuto {
		if f, err = sniff(br); err != nil {
			return nil, err
		}
		rd.format = f
	}
	if o.usage && f != FormatCSV {
		return nil, &FileError{Reason: "a usage export is read from CSV or an .xlsx workbook, as the vendor's portal exports it: give one of those"}
	}
	switch f {
	case FormatCSV:
		err = rd.startCSV(br, o.Map)
	case FormatJSON:
		err = rd.startJSON(br)
	case FormatNDJSON:
		rd.br, rd.next = br, rd.nextNDJSON
	}
	if err != nil {
		return nil, err
	}
	return rd, nil
}

// Encoding returns the text encoding being read, one of the Encoding
// constants, or "" for a workbook. It is final once the last record was
// read: a file is taken for Windows-1252 at its first byte that is not
// ASCII.
func (rd *Reader) Encoding() string {
	if rd.encoding == nil {
		return ""
	}
	return rd.encoding()
}

// Sheet returns the name of the workbook's sheet being read, or "".
func (rd *Reader) Sheet() string { return rd.sheet }

// Close releases the temporary files of a workbook. It is safe to call on
// any Reader, more than once.
func (rd *Reader) Close() error {
	if rd.book == nil {
		return nil
	}
	err := rd.book.close()
	rd.book = nil
	return err
}

// sniff peeks past leading white space to the first byte that decides the
// format; input that is empty or all white space is CSV (with no header).
func sniff(br *bufio.Reader) (Format, error) {
	for n := 1; ; n *= 2 {
		b, err := br.Peek(n)
		for _, c := range b {
			switch c {
			case ' ', '\t', '\r', '\n':
				continue
			case '[':
				return FormatJSON, nil
			case '{':
				return FormatNDJSON, nil
			}
			return FormatCSV, nil
		}
		if err != nil {
			if err == io.EOF || err == bufio.ErrBufferFull {
				return FormatCSV, nil
			}
			return "", readErr(err)
		}
	}
}

// readErr classifies an error of the underlying reader.
func readErr(err error) error {
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return fmt.Errorf("%w: the body is larger than the limit of %d bytes: split the file and import the parts (%w)", ErrTooLarge, mbe.Limit, err)
	}
	return fmt.Errorf("read import: %w", err)
}

// Format returns the format being read, after sniffing.
func (rd *Reader) Format() Format { return rd.format }

// UnknownColumns returns the sorted names of the columns (CSV) or keys (JSON,
// NDJSON) that are not fields of the import format and were ignored. For CSV
// it is complete once NewReader returns; for JSON it grows as records are
// read, and is capped at 100 names.
func (rd *Reader) UnknownColumns() []string {
	out := slices.AppendSeq(make([]string, 0, len(rd.unknown)), maps.Keys(rd.unknown))
	slices.Sort(out)
	return out
}

// Next returns the next record, or io.EOF after the last. Any other error is
// fatal and sticky: the input cannot be read past it (ErrTooLarge, an I/O
// error, or a *FileError such as JSON that is broken beyond the row).
func (rd *Reader) Next() (Record, error) {
	if rd.err != nil {
		return Record{}, rd.err
	}
	clear(rd.fields)
	rec, err := rd.next()
	if err != nil {
		rd.err = err
		return rec, err
	}
	rec.Fields = rd.fields
	return rec, nil
}

// ---- CSV ----

func (rd *Reader) startCSV(br *bufio.Reader, m map[string]string) error {
	c := csv.NewReader(br)
	if sep := separatorOf(firstLine(br)); sep != 0 {
		c.Comma = sep
	}
	c.FieldsPerRecord = -1
	c.ReuseRecord = true
	rd.csv = c
	head, err := c.Read()
	size := c.InputOffset()
	if err == io.EOF {
		return &FileError{Reason: "the file is empty: the first line must be a header row naming the columns, including subscription_id and end_date"}
	}
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		return &FileError{Line: pe.StartLine, Reason: "header row: " + csvReason(pe.Err)}
	}
	if err != nil {
		return readErr(err)
	}
	if size > MaxRowBytes {
		return &FileError{Line: 1, Reason: fmt.Sprintf("the header row is longer than the limit of %d bytes: name only the columns of the import format", MaxRowBytes)}
	}
	if err := rd.mapHeader(head, m); err != nil {
		return err
	}
	rd.next = rd.nextCSV
	return nil
}

// mapHeader sets rd.header from a header row: each column's field, by the
// column map m, the field's own name, or the vendor's name for it, in that
// order of precedence; a vendor's name for a field that another column
// already gives is ignored and reported, as unknown columns are.
func (rd *Reader) mapHeader(head []string, m map[string]string) error {
	rd.header = make([]string, len(head))
	seen := map[string]bool{}
	var later []int // columns named by an alias, placed after the rest
	l := subscriptionLayout
	if rd.usage {
		l = usageLayout
	}
	for i, h := range head {
		name := strings.TrimSpace(h)
		field, own := l.fieldOf(name)
		if f, ok := m[headerKey(name)]; ok {
			field, own = f, true
		}
		switch {
		case name == "", field == "-": // "-": a column not to read, such as a user's name in a usage export
		case field == "":
			rd.unknown[truncate(strings.ToLower(name), 64)] = true
		case !own:
			later = append(later, i)
			rd.header[i] = field // unless another column gives it
		case seen[field]:
			return &FileError{Line: 1, Reason: fmt.Sprintf("column %s appears twice in the header row: keep one of them", field)}
		default:
			seen[field] = true
			rd.header[i] = field
		}
	}
	for _, i := range later {
		if f := rd.header[i]; !seen[f] {
			seen[f] = true
			continue
		}
		rd.header[i] = ""
		rd.unknown[truncate(strings.ToLower(strings.TrimSpace(head[i])), 64)] = true
	}
	if rd.usage {
		return usageColumns(seen)
	}
	missing := slices.DeleteFunc([]string{"subscription_id", "end_date"}, func(f string) bool { return seen[f] })
	if len(missing) > 0 {
		return &FileError{Reason: fmt.Sprintf("missing required %s %s: the header row must name subscription_id and end_date (or the vendor's Subscription ID and End Date); rename the columns in the file, or give a column map: renewals import --map FILE", subscription.Plural(len(missing), "column", "columns"), strings.Join(missing, ", "))}
	}
	return nil
}

func (rd *Reader) nextCSV() (Record, error) {
	for {
		start := rd.csv.InputOffset()
		cells, err := rd.csv.Read()
		if err == io.EOF {
			return Record{}, io.EOF
		}
		pe, bad := errors.AsType[*csv.ParseError](err)
		if err != nil && !bad {
			return Record{}, readErr(err)
		}
		rd.setCells(cells) // on a parse error, the fields before it
		rec := Record{}
		if bad {
			rec.Line = pe.StartLine
		} else {
			rec.Line, _ = rd.csv.FieldPos(0)
		}
		switch {
		case rd.csv.InputOffset()-start > MaxRowBytes:
			rec.Problems, rec.Partial = []FieldError{{Reason: tooLong("row")}}, true
		case bad:
			field := "" // the field that broke is the one after those read
			if len(cells) < len(rd.header) {
				field = rd.header[len(cells)]
			}
			rec.Problems, rec.Partial = []FieldError{{Field: field, Reason: csvReason(pe.Err)}}, true
		case blankCells(cells):
			// A row of empty cells (",,,," from a spreadsheet) is an empty line.
			clear(rd.fields)
			continue
		}
		return rec, nil
	}
}

// setCells sets the fields of a row's cells, by the header's columns.
func (rd *Reader) setCells(cells []string) {
	for i, v := range cells {
		if i < len(rd.header) && rd.header[i] != "" {
			rd.fields[rd.header[i]] = v
		}
	}
}

// tooLong is the reason for a row, object or line longer than MaxRowBytes.
func tooLong(what string) string {
	return fmt.Sprintf("the %s is longer than the limit of %d bytes (64 KiB): shorten its fields", what, MaxRowBytes)
}

var elementTooLong = fmt.Sprintf("the JSON element here is longer than %d bytes (1 MiB), far past the limit of %d bytes (64 KiB) a row, so reading stopped at it: "+
	"split it into one object per subscription or shorten its fields, then import the file again (rows already stored come back unchanged)", MaxElementBytes, MaxRowBytes)

func csvReason(err error) string {
	switch {
	case errors.Is(err, csv.ErrBareQuote):
		return `a quote (") inside a field that does not start with one: put the whole field in double quotes and double each quote inside it, e.g. "the ""best"" plan"`
	case errors.Is(err, csv.ErrQuote):
		return `a quoted field is not closed properly: end it with a quote followed by a comma or the end of the line, and double each quote inside it`
	}
	return fmt.Sprintf("the row is not valid CSV (%v): check its quotes and commas", err)
}

// ---- JSON array ----

func (rd *Reader) startJSON(r io.Reader) error {
	rd.lines = &lineCounter{src: r}
	rd.lines.window()
	rd.dec = json.NewDecoder(rd.lines)
	tok, err := rd.dec.Token()
	if err != nil {
		return rd.jsonErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return &FileError{Line: rd.jsonLine(), Reason: "the JSON document is not an array: give an array of objects, [{...}, {...}], or one object per line (NDJSON)"}
	}
	rd.next = rd.nextJSON
	return nil
}

func (rd *Reader) jsonErr(err error) error {
	if err == io.EOF {
		return &FileError{Reason: "the file is empty: give a JSON array of objects"}
	}
	if errors.Is(err, errElementTooLong) {
		return &FileError{Line: rd.jsonErrLine(), Reason: elementTooLong}
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return invalidJSON(rd.jsonErrLine(), se)
	}
	if err == io.ErrUnexpectedEOF {
		return &FileError{Line: rd.jsonErrLine(), Reason: "the JSON array ends early: the file is cut short or a closing ] or } is missing"}
	}
	return readErr(err)
}

func invalidJSON(line int, se *json.SyntaxError) *FileError {
	return &FileError{Line: line, Reason: fmt.Sprintf("invalid JSON (%v): the file cannot be read from line %d on; fix it and import again", se, line)}
}

func (rd *Reader) nextJSON() (Record, error) {
	rd.lines.window()
	if !rd.dec.More() {
		if _, err := rd.dec.Token(); err != nil { // the closing ']'
			if err == io.EOF { // the file ends before it
				err = io.ErrUnexpectedEOF
			}
			return Record{}, rd.jsonErr(err)
		}
		if _, err := rd.dec.Token(); err != io.EOF {
			if err != nil {
				return Record{}, rd.jsonErr(err)
			}
			return Record{}, &FileError{Line: rd.jsonLine(), Reason: "there is more after the JSON array: give one array of objects"}
		}
		return Record{}, io.EOF
	}
	var raw json.RawMessage
	if err := rd.dec.Decode(&raw); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return Record{}, invalidJSON(rd.syntaxErrLine(se), se)
		}
		return Record{}, rd.jsonErr(err)
	}
	rec := Record{Line: rd.jsonLine() - bytes.Count(raw, newline)}
	if len(raw) > MaxRowBytes {
		rd.idOf(raw)
		rec.Problems, rec.Partial = []FieldError{{Reason: tooLong("object")}}, true
		return rec, nil
	}
	rec.Problems, rec.Partial = rd.object(raw)
	return rec, nil
}

// idOf takes only the subscription id (a string or a number) of an element
// too long to read, so that its rejection names it: encoding/json passes
// over the other members without keeping them.
func (rd *Reader) idOf(raw []byte) {
	var obj struct {
		ID json.RawMessage `json:"subscription_id"`
	}
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &obj) != nil || len(obj.ID) == 0 {
		return
	}
	var s string
	switch c := obj.ID[0]; {
	case c == '"' && json.Unmarshal(obj.ID, &s) == nil:
		rd.fields["subscription_id"] = s
	case c == '-' || c >= '0' && c <= '9':
		rd.fields["subscription_id"] = string(obj.ID)
	}
}

// syntaxErrLine returns the line of the byte where Decode met se inside an
// element. The decoder's own offsets count from the start of the stream
// and its position stays at the element's start, so the element is decoded
// again from what is buffered, with a decoder of its own whose offset
// counts from there (json.Unmarshal would also fail on what follows the
// element). An error the second decoder does not meet the same way (a
// missing comma before the element) is placed as jsonErrLine places it.
func (rd *Reader) syntaxErrLine(se *json.SyntaxError) int {
	buffered, _ := io.ReadAll(rd.dec.Buffered())
	var raw json.RawMessage
	again, ok := errors.AsType[*json.SyntaxError](json.NewDecoder(bytes.NewReader(buffered)).Decode(&raw))
	if !ok || again.Error() != se.Error() || again.Offset < 1 || again.Offset > int64(len(buffered)) {
		return rd.jsonErrLine()
	}
	// Offset counts the byte that broke: a newline that breaks a string
	// is on the line it ends.
	return rd.jsonLine() + bytes.Count(buffered[:again.Offset-1], newline)
}

// jsonLine returns the line of the decoder's offset, reckoned back from
// the end of what it has read.
func (rd *Reader) jsonLine() int {
	var after newlines
	io.Copy(&after, rd.dec.Buffered())
	return 1 + rd.lines.n - int(after)
}

// jsonErrLine returns the line of the first byte past the decoder's offset
// that is not white space: where the value that broke starts.
func (rd *Reader) jsonErrLine() int {
	b, _ := io.ReadAll(rd.dec.Buffered())
	return rd.jsonLine() + bytes.Count(b[:len(b)-len(bytes.TrimLeft(b, " \t\r\n"))], newline)
}

var newline = []byte{'\n'}

// lineCounter counts the newlines read through it, so that a line can be
// reckoned back from the end of what the json.Decoder reading from it has
// buffered. It passes on at most 4 KiB a read, so that the decoder never
// holds much more than the element it decodes, and at most MaxElementBytes
// from the last call of window: past that, Read fails with
// errElementTooLong, which the decoder returns.
type lineCounter struct {
	src   io.Reader
	n     int // newlines read
	read  int // bytes read
	limit int // read may not pass it
}

// window lets the decoder read MaxElementBytes more: one element's worth.
func (lc *lineCounter) window() { lc.limit = lc.read + MaxElementBytes }

func (lc *lineCounter) Read(p []byte) (int, error) {
	if lc.read >= lc.limit {
		return 0, errElementTooLong
	}
	n, err := lc.src.Read(p[:min(len(p), 4<<10, lc.limit-lc.read)])
	lc.n += bytes.Count(p[:n], newline)
	lc.read += n
	return n, err
}

// errElementTooLong is lineCounter's error once one element's window is
// read.
var errElementTooLong = errors.New("JSON element longer than MaxElementBytes")

// newlines counts the newlines written to it.
type newlines int

func (c *newlines) Write(p []byte) (int, error) {
	*c += newlines(bytes.Count(p, newline))
	return len(p), nil
}

// object reads one JSON object of scalars into rd.fields, and reports
// whether it was not an object at all.
func (rd *Reader) object(raw []byte) ([]FieldError, bool) {
	var obj map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		return []FieldError{{Reason: "not a JSON object: give each subscription as an object, {\"subscription_id\": ..., \"end_date\": ...}"}}, true
	}
	var probs []FieldError
	clear(rd.named)
	for k, v := range obj {
		name := strings.ToLower(strings.TrimSpace(k))
		if fieldIndex(name) < 0 {
			if name != "" && len(rd.unknown) < maxUnknown {
				rd.unknown[truncate(name, 64)] = true
			}
			continue
		}
		// Names match without case, so "Seats" and "seats" are one
		// field given twice: which to keep cannot be told, so the row
		// is rejected rather than one taken at random.
		if rd.named[name] {
			probs = append(probs, FieldError{name, "is given twice, under names that differ only in case or spaces: give it once"})
			continue
		}
		rd.named[name] = true
		switch v[0] {
		case '"':
			var s string
			json.Unmarshal(v, &s) // cannot fail: Unmarshal checked the whole object first
			rd.fields[name] = s
		case 'n': // null: absent
			delete(rd.fields, name)
		case 't', 'f':
			probs = append(probs, FieldError{name, "is a JSON boolean: give a string or a number"})
		case '{':
			probs = append(probs, FieldError{name, "is a JSON object: give a string or a number"})
		case '[':
			probs = append(probs, FieldError{name, "is a JSON array: give a string or a number (for sa_emails, one string with the addresses separated by ;)"})
		default: // a number: keep its literal text
			rd.fields[name] = string(v)
		}
	}
	slices.SortFunc(probs, func(a, b FieldError) int { return fieldIndex(a.Field) - fieldIndex(b.Field) })
	return probs, false
}

// ---- NDJSON ----

func (rd *Reader) nextNDJSON() (Record, error) {
	for {
		b, err := rd.br.ReadSlice('\n')
		if len(b) == 0 && err == io.EOF {
			return Record{}, io.EOF
		}
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return Record{}, readErr(err)
		}
		rd.line++
		rec := Record{Line: rd.line}
		if err == bufio.ErrBufferFull {
			for err == bufio.ErrBufferFull {
				_, err = rd.br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return Record{}, readErr(err)
			}
			rec.Problems, rec.Partial = []FieldError{{Reason: tooLong("line")}}, true
			return rec, nil
		}
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			continue
		}
		if b[0] != '{' || !json.Valid(b) {
			rec.Problems, rec.Partial = []FieldError{{Reason: "the line is not one JSON object: NDJSON needs each subscription as a complete object on its own line"}}, true
			return rec, nil
		}
		rec.Problems, rec.Partial = rd.object(b)
		return rec, nil
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 { // keep whole UTF-8 sequences
		n--
	}
	return s[:n] + "…"
}
