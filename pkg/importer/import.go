// Package importer reads subscription data (CSV with a header row, an .xlsx
// workbook, a JSON array, or NDJSON, all with the same field names, or the
// vendor's export with its own), validates each row, and upserts the valid
// rows in batches. It streams: a file of a million rows is never held in
// memory, only one row and one batch at a time. ImportUsage reads the
// vendor's seat-usage export into counts per subscription.
//
// Three levels: Reader yields raw records with their line numbers; Validate
// turns one record into a subscription or says which fields are wrong and
// what to do; Import does both over a whole input and returns a Report.
package importer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"renewals/pkg/subscription"
)

// Upserter is the part of subscription.Store that Import needs.
type Upserter interface {
	// Upsert writes each subscription by ID, as subscription.Store.Upsert.
	Upsert(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error)
}

// Defaults of Options.
const (
	DefaultBatchSize     = 1000
	DefaultProgressEvery = 10000
	DefaultMaxListed     = 1000
)

// Options configure Import. Only Store is required.
type Options struct {
	// Store receives the valid rows. Required.
	Store Upserter
	// Format of the input; FormatAuto (the default) sniffs it.
	Format Format
	// BatchSize is the number of rows per Upsert call; default 1,000.
	BatchSize int
	// Progress, when set, is called with the number of rows read so far
	// every ProgressEvery rows, and at the end with the total unless the
	// last call already gave it.
	Progress func(rows int)
	// ProgressEvery is how often Progress is called; default 10,000 rows.
	ProgressEvery int
	// OnUpsert, when set, is called for each stored row, in input order,
	// with what the store did to it, after its batch was written.
	OnUpsert func(sub subscription.Subscription, res subscription.UpsertResult)
	// MaxListed caps the length of Report.Rejections and of
	// Report.Duplicates, so that a file of a million bad rows still makes a
	// report of bounded size; the rest are only counted. Default 1,000.
	MaxListed int
	// Map, Sheet and TempDir are as in ReaderOptions: a column map for a
	// layout the import does not know, the workbook's sheet, where a
	// workbook is unpacked.
	Map     map[string]string
	Sheet   string
	TempDir string
	// DateFormat is the order of day and month in dates written with
	// slashes; DateAuto (the default) tells it from the file's rows.
	DateFormat DateFormat
}

// Report is the outcome of an import. Its JSON form is what the HTTP API
// returns and the CLI prints; the field names are stable.
type Report struct {
	// Rows is the number of rows read (blank lines not counted). When
	// Import returns no error it equals Created + Updated + Unchanged +
	// Rejected.
	Rows int `json:"rows"`
	// Created, Updated and Unchanged count the stored rows as the store
	// reported each of them. A subscription id repeated in the file is
	// stored once per row, in file order, so it counts once per row: e.g.
	// created for its first row and updated (or unchanged, when the rows
	// are identical) for each later one. The last row's data is what stays.
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	// Rejected counts the rows that were not stored.
	Rejected int `json:"rejected"`
	// Rejections lists why, one entry per rejected field (a row with two
	// bad fields has two entries), in file order, up to Options.MaxListed.
	// Text that is not UTF-8 is the exception: one entry, with no field and
	// at the line of the first such row, says it for all of them.
	Rejections []Rejection `json:"rejections"`
	// RejectionsOmitted counts the entries left out of Rejections.
	RejectionsOmitted int `json:"rejections_omitted"`
	// UnknownColumns are the ignored column (or JSON key) names, sorted.
	UnknownColumns []string `json:"unknown_columns"`
	// Duplicates lists each subscription id that more than one valid row
	// gave, with their lines, ordered by first line, up to
	// Options.MaxListed ids. The last of the lines wins.
	Duplicates []Duplicate `json:"duplicates"`
	// DuplicatesOmitted counts the repeated ids left out of Duplicates.
	DuplicatesOmitted int `json:"duplicates_omitted"`
	// Encoding is the text encoding the file was read in (EncodingUTF8,
	// EncodingUTF8BOM, EncodingUTF16LE, EncodingUTF16BE,
	// EncodingWindows1252); "" for a workbook or a file not read.
	Encoding string `json:"encoding,omitempty"`
	// Sheet is the workbook's sheet that was read, "" for text.
	Sheet string `json:"sheet,omitempty"`
	// DateFormat is the order that dates written with slashes were read
	// in, "" when there were none.
	DateFormat DateFormat `json:"date_format,omitempty"`
}

// Rejection is one reason one row was rejected.
type Rejection struct {
	// Line is where the row starts in the input.
	Line int `json:"line"`
	// SubscriptionID is the row's id when it is a valid id, else "".
	SubscriptionID string `json:"subscription_id"`
	// Field is the field at fault, or "" when the whole row is.
	Field string `json:"field"`
	// Reason says what is wrong and what to do.
	Reason string `json:"reason"`
}

// Duplicate is a subscription id given by more than one valid row.
type Duplicate struct {
	SubscriptionID string `json:"subscription_id"`
	// Lines are the rows' lines in file order; the last one's data is kept.
	Lines []int `json:"lines"`
}

// Text is the report as a person reads it: a summary line, e.g. "12 rows: 10
// created, 1 updated, 0 unchanged, 1 rejected", then one line per rejection,
// e.g. `line 7: end_date: "31/05/2027" is not a date: use YYYY-MM-DD, e.g.
// 2027-05-31`, then the unknown columns and the duplicates, if any. Each line
// ends in a newline.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s: %d created, %d updated, %d unchanged, %d rejected\n",
		r.Rows, subscription.Plural(r.Rows, "row", "rows"), r.Created, r.Updated, r.Unchanged, r.Rejected)
	writeRejections(&b, r.Rejections, r.RejectionsOmitted)
	writeUnknown(&b, r.UnknownColumns)
	for _, d := range r.Duplicates {
		lines := make([]string, len(d.Lines))
		for i, l := range d.Lines {
			lines[i] = strconv.Itoa(l)
		}
		fmt.Fprintf(&b, "subscription %s is on lines %s: the last one wins\n", d.SubscriptionID, strings.Join(lines, ", "))
	}
	if r.DuplicatesOmitted > 0 {
		fmt.Fprintf(&b, "... and %d more repeated subscription %s not listed\n", r.DuplicatesOmitted, subscription.Plural(r.DuplicatesOmitted, "id", "ids"))
	}
	writeSource(&b, r.Sheet, r.Encoding)
	if r.DateFormat != "" && r.DateFormat != DateISO {
		fmt.Fprintf(&b, "dates with slashes read as %s\n", r.DateFormat)
	}
	return b.String()
}

// writeRejections writes the lines of a report's rejections.
func writeRejections(b *strings.Builder, xs []Rejection, omitted int) {
	for _, x := range xs {
		if x.Field == "" {
			fmt.Fprintf(b, "line %d: %s\n", x.Line, x.Reason)
		} else {
			fmt.Fprintf(b, "line %d: %s: %s\n", x.Line, x.Field, x.Reason)
		}
	}
	if omitted > 0 {
		fmt.Fprintf(b, "... and %d more %s not listed\n", omitted, subscription.Plural(omitted, "rejection", "rejections"))
	}
}

// writeUnknown writes the line of a report's unknown columns.
func writeUnknown(b *strings.Builder, cols []string) {
	if len(cols) > 0 {
		fmt.Fprintf(b, "ignored unknown %s: %s\n", subscription.Plural(len(cols), "column", "columns"), strings.Join(cols, ", "))
	}
}

// writeSource writes the line that says what was read: a workbook's sheet,
// or text in an encoding other than UTF-8.
func writeSource(b *strings.Builder, sheet, encoding string) {
	switch {
	case sheet != "":
		fmt.Fprintf(b, "read sheet %q of the workbook\n", sheet)
	case encoding != "" && encoding != EncodingUTF8 && encoding != EncodingUTF8BOM:
		fmt.Fprintf(b, "read as %s text\n", encoding)
	}
}

// Import reads r, validates each row and upserts the valid ones into
// opts.Store in batches of opts.BatchSize, in file order, keeping the valid
// rows even when others are rejected. It returns the report.
//
// An error means the input could not be read to its end or the store failed:
// a *FileError (errors.Is ErrInvalidFile) when the file as a whole is
// unreadable, e.g. a missing required column; an error wrapping ErrTooLarge
// when the caller's http.MaxBytesReader cut the body off; the store's or the
// context's error. Batches written before the error stay written, and the
// returned Report counts them: on a read error, the rows read before it are
// still stored and reported.
func Import(ctx context.Context, r io.Reader, opts Options) (Report, error) {
	if opts.Store == nil {
		return Report{}, errors.New("import: no store given")
	}
	opts = opts.withDefaults()
	im := importer{opts: opts, seed: maphash.MakeSeed(), seen: map[uint64]int32{}, dups: map[uint64]int{}, enc: badEncoding{slot: -1}, dates: dateOrder{format: opts.DateFormat}}
	im.report = Report{Rejections: []Rejection{}, UnknownColumns: []string{}, Duplicates: []Duplicate{}}
	rd, err := opts.open(r, false)
	if err != nil {
		return im.report, err
	}
	defer rd.Close()
	err = im.run(ctx, rd)
	im.report.Encoding, im.report.Sheet, im.report.DateFormat = rd.Encoding(), rd.Sheet(), im.dates.format
	if werr := im.waitAll(); werr != nil { // the batches still in flight when run stopped
		err = errors.Join(err, werr)
	}
	if im.enc.slot >= 0 {
		im.report.Rejections[im.enc.slot].Reason = im.enc.reason()
	}
	im.report.UnknownColumns = rd.UnknownColumns()
	slices.SortFunc(im.report.Duplicates, func(a, b Duplicate) int { return a.Lines[0] - b.Lines[0] })
	opts.progressEnd(im.report.Rows)
	return im.report, err
}

// withDefaults returns o with the defaults in place of zero (or negative)
// sizes.
func (o Options) withDefaults() Options {
	o.BatchSize = cmp.Or(max(o.BatchSize, 0), DefaultBatchSize)
	o.ProgressEvery = cmp.Or(max(o.ProgressEvery, 0), DefaultProgressEvery)
	o.MaxListed = cmp.Or(max(o.MaxListed, 0), DefaultMaxListed)
	return o
}

// open starts reading r as o says, a usage export when usage is set.
func (o Options) open(r io.Reader, usage bool) (*Reader, error) {
	return OpenReader(r, ReaderOptions{Format: o.Format, Map: o.Map, Sheet: o.Sheet, TempDir: o.TempDir, usage: usage})
}

// progressEnd calls o.Progress with the total of rows, unless progress
// just did.
func (o Options) progressEnd(rows int) {
	if o.Progress != nil && (rows == 0 || rows%o.ProgressEvery != 0) {
		o.Progress(rows)
	}
}

// progress calls o.Progress every o.ProgressEvery rows, and then returns
// the context's error.
func (o Options) progress(ctx context.Context, rows int) error {
	if rows%o.ProgressEvery != 0 {
		return nil
	}
	if o.Progress != nil {
		o.Progress(rows)
	}
	return ctx.Err()
}

type importer struct {
	opts   Options
	report Report
	batch  []subscription.Subscription
	// batchLine is the line of the current batch's first row, and
	// batchRepeats whether the batch holds an id that a row before it gave.
	batchLine    int
	batchRepeats bool
	// Batches are upserted while the next ones are read and validated, so
	// that parsing overlaps the store's round trips, and up to
	// maxInflight of them at once, so that the store's work on one batch
	// overlaps its tail on another. Two batches in flight together never
	// share an id: a batch that repeats an id of an earlier row waits for
	// every batch before it, so each id's rows still reach the store in
	// file order. The results are counted in file order: inflight is
	// oldest first.
	inflight []chan upserted
	seed     maphash.Seed
	seen     map[uint64]int32 // hash of a subscription id -> first line of a valid row
	dups     map[uint64]int   // hash of a subscription id -> index in report.Duplicates, or -1
	enc      badEncoding      // the rows with text that is not UTF-8, told in one sentence

	// dates is the order of the file's dates with slashes. Until a row
	// decides it, the rows from the first with a date that could be read
	// either way are held in pending, in order, and handled once a row
	// decides, or refused at the end when none does.
	dates   dateOrder
	pending []Record
}

// maxPending is how many rows an import holds back while their dates could
// be day first or month first: a file whose first maxPending such rows do
// not tell is refused.
const maxPending = 20000

// maxInflight is how many batches Import has the store write at once.
const maxInflight = 3

func (im *importer) run(ctx context.Context, rd *Reader) error {
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			if len(im.pending) > 0 {
				return errors.Join(im.dates.undecided(0), im.flush(ctx))
			}
			return im.flush(ctx)
		}
		if err != nil {
			// Keep what was read well before the input broke off.
			if ferr := im.flush(ctx); ferr != nil {
				return errors.Join(err, ferr)
			}
			return err
		}
		im.report.Rows++
		if err := im.opts.progress(ctx, im.report.Rows); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if im.dates.format == DateAuto && !rec.Partial {
			hold := false
			for _, f := range dateFields {
				if v, ok := rec.Fields[f]; ok && im.dates.see(v) {
					hold = true
				}
			}
			if im.dates.format != DateAuto {
				if err := im.release(ctx); err != nil {
					return err
				}
			} else if hold || len(im.pending) > 0 {
				if len(im.pending) >= maxPending {
					return errors.Join(im.dates.undecided(maxPending), im.flush(ctx))
				}
				im.pending = append(im.pending, Record{Line: rec.Line, Fields: maps.Clone(rec.Fields), Problems: rec.Problems})
				continue
			}
		}
		if err := im.handle(ctx, rec); err != nil {
			return err
		}
	}
}

// release handles the rows held back, in order, now that the order of
// their dates is known.
func (im *importer) release(ctx context.Context) error {
	held := im.pending
	im.pending = nil
	for _, rec := range held {
		if err := im.handle(ctx, rec); err != nil {
			return err
		}
	}
	return nil
}

// handle validates one row and rejects it or adds it to the batch.
func (im *importer) handle(ctx context.Context, rec Record) error {
	sub, errs := validate(rec.Fields, im.dates.format)
	if len(rec.Problems) > 0 || len(errs) > 0 {
		im.reject(rec, errs)
		return nil
	}
	if len(im.batch) == 0 {
		im.batchLine = rec.Line
	}
	if first := im.noteID(sub.ID, rec.Line); first < im.batchLine {
		im.batchRepeats = true
	}
	im.batch = append(im.batch, sub)
	if len(im.batch) >= im.opts.BatchSize {
		return im.flush(ctx)
	}
	return nil
}

func (im *importer) reject(rec Record, errs []FieldError) {
	im.report.Rejected++
	id := strings.TrimSpace(rec.Fields["subscription_id"])
	if subscription.ValidID(id) != nil {
		id = ""
	}
	all := merge(rec, errs)
	// Text that is not UTF-8 is a problem of the file, not of each row: one
	// sentence for all such rows, where the first of them is.
	n := len(all)
	if all = slices.DeleteFunc(all, func(e FieldError) bool { return e.Reason == notUTF8 }); len(all) < n {
		if im.enc.rows == 0 {
			im.enc.slot = list(&im.report.Rejections, &im.report.RejectionsOmitted, im.opts.MaxListed, Rejection{Line: rec.Line})
		}
		im.enc.note(rec.Line, rec.Fields)
	}
	for _, e := range all {
		list(&im.report.Rejections, &im.report.RejectionsOmitted, im.opts.MaxListed, Rejection{Line: rec.Line, SubscriptionID: strings.Clone(id), Field: e.Field, Reason: e.Reason})
	}
}

// list appends x to *xs, unless *xs holds max entries already: then it
// counts x in *omitted instead. It returns x's index in *xs, or -1.
func list[T any](xs *[]T, omitted *int, max int, x T) int {
	if len(*xs) >= max {
		*omitted++
		return -1
	}
	*xs = append(*xs, x)
	return len(*xs) - 1
}

// merge combines a record's problems with Validate's verdict on it: one
// reason per field, the whole row's first, then the fields in the format's
// order. The verdict is dropped when the record is partial.
func merge(rec Record, errs []FieldError) []FieldError {
	if rec.Partial {
		errs = nil
	}
	for _, p := range rec.Problems {
		errs = slices.DeleteFunc(errs, func(e FieldError) bool { return e.Field == p.Field })
	}
	all := append(slices.Clip(rec.Problems), errs...)
	slices.SortStableFunc(all, func(a, b FieldError) int { return fieldIndex(a.Field) - fieldIndex(b.Field) })
	return all
}

// noteID records a valid row's id to find repeats. The map is keyed by a
// 64-bit hash of the id rather than the id itself: 12 bytes a row instead of
// a string header and a copy of the string, which halves the live heap of a
// million-row import (about 35 MB instead of 70). Two different ids of a
// million-row file share a hash with a chance of about one in 30 million;
// that would only list a false duplicate in the report, since every row is
// upserted either way.
//
// It returns the line of the first valid row with the id (as far as the hash
// tells: a collision makes it earlier, never later).
func (im *importer) noteID(id string, line int) int {
	h := maphash.String(im.seed, id)
	first, ok := im.seen[h]
	if !ok {
		im.seen[h] = int32(min(line, 1<<31-1))
		return line
	}
	if i, ok := im.dups[h]; ok {
		if i >= 0 { // else beyond MaxListed: counted once already
			im.report.Duplicates[i].Lines = append(im.report.Duplicates[i].Lines, line)
		}
		return int(first)
	}
	im.dups[h] = list(&im.report.Duplicates, &im.report.DuplicatesOmitted, im.opts.MaxListed, Duplicate{SubscriptionID: strings.Clone(id), Lines: []int{int(first), line}})
	return int(first)
}

// upserted is the store's answer for one batch.
type upserted struct {
	batch []subscription.Subscription
	res   []subscription.UpsertResult
	err   error
}

// flush hands the current batch to the store in the background, once the
// batches in flight allow it: all of them must be written first when the
// batch repeats an id of an earlier row, else the oldest when maxInflight
// are.
func (im *importer) flush(ctx context.Context) error {
	for len(im.inflight) > 0 && (im.batchRepeats || len(im.inflight) >= maxInflight) {
		if err := im.wait(); err != nil {
			return err
		}
	}
	if len(im.batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	b, done := im.batch, make(chan upserted, 1)
	go func() {
		res, err := im.opts.Store.Upsert(ctx, b)
		done <- upserted{b, res, err}
	}()
	im.inflight = append(im.inflight, done)
	im.batch, im.batchRepeats = make([]subscription.Subscription, 0, im.opts.BatchSize), false
	return nil
}

// waitAll waits for every batch in flight, counting each one the store
// wrote, and returns their errors.
func (im *importer) waitAll() error {
	var errs []error
	for len(im.inflight) > 0 {
		errs = append(errs, im.wait())
	}
	return errors.Join(errs...)
}

// wait counts the oldest batch in flight into the report once the store
// has written it.
func (im *importer) wait() error {
	u := <-im.inflight[0]
	im.inflight[0] = nil
	im.inflight = im.inflight[1:]
	if u.err != nil {
		return fmt.Errorf("import: upsert %d subscriptions: %w", len(u.batch), u.err)
	}
	if len(u.res) != len(u.batch) {
		return fmt.Errorf("import: upsert of %d subscriptions returned %d results", len(u.batch), len(u.res))
	}
	for i, r := range u.res {
		switch r.Change {
		case subscription.Created:
			im.report.Created++
		case subscription.Updated:
			im.report.Updated++
		case subscription.Unchanged:
			im.report.Unchanged++
		default:
			return fmt.Errorf("import: upsert of subscription %s returned the unknown change %q", u.batch[i].ID, r.Change)
		}
		if im.opts.OnUpsert != nil {
			im.opts.OnUpsert(u.batch[i], r)
		}
	}
	return nil
}
