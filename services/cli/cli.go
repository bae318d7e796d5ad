// Package cli is the renewals command line: `renewals serve` runs the
// service; the other subcommands are clients of a running server's HTTP API.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"renewals/pkg/importer"
	"renewals/pkg/subscription"
	"renewals/services/api"
	"renewals/services/calllist"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitRejected = 1 // the command ran but something was rejected
	ExitError    = 2 // usage, connection or server error
)

const usage = `renewals: renewal notices for software subscriptions, to the contract manager only.

Usage:
  renewals serve [--target all|scheduler|notifier|calllist|api|bounces[,...]] [flags]
  renewals import FILE                      .csv, .xlsx, .json (array) or .ndjson; prints the import report
  renewals import [--format csv|json|ndjson] FILE|-
                                            any other name, or standard input (-)
  renewals import FILE.xlsx [--sheet NAME]   a workbook; --map FILE for another layout, --date-format DD/MM/YYYY|MM/DD/YYYY
  renewals import-usage FILE [--as-of DATE] the vendor's seat-usage export (.csv or .xlsx): unused seats per subscription
  renewals run [--as-of DATE] [--dry-run] [--wait]
                                            one scheduler pass now, or as if today were DATE
  renewals forecast [--from DATE] [--days N]
                                            what would go out, day by day
  renewals notices --subscription ID        the ledger: what was sent, when, to which role
  renewals calllist [--format table|csv|json] [--rep NAME] [--min-days N] [--max-days N] [--as-of DATE]
                                            who to call, most urgent first
  renewals erase ID                         erase one subscription's personal data
  renewals call ID --outcome OUTCOME [--note TEXT] [--callback DATE]
                                            record a renewal call and what came of it
  renewals resend KEY [--force --reason TEXT]
                                            send a bounced, failed or undeliverable notice again
  renewals bounce FILE.eml                  feed one saved bounce message by hand
  renewals health                           exit 0 when the server answers /readyz (container checks)
  renewals user add NAME [--role viewer|operator]
                                            a user of the web console; the password from the terminal or standard input

Client subcommands talk to a running server: --server (RENEWALS_SERVER, default
http://127.0.0.1:8080), token from RENEWALS_API_TOKEN, else <data dir>/api-token.
Run 'renewals COMMAND --help' for a command's flags.

Exit status: 0 success; 1 something was rejected; 2 usage, connection or server error.
`

// Env is what a command sees of its environment.
type Env struct {
	Getenv func(string) string
	// Environ lists the environment as "NAME=value" (os.Environ), so that
	// serve can warn about misspelt RENEWALS_* variables; nil skips that.
	Environ func() []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
}

// Main runs the command line args (without the program name) and returns the
// exit status.
func Main(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ExitError
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, rest, env)
	case "import":
		return importCmd(rest, env)
	case "import-usage":
		return importUsageCmd(rest, env)
	case "run":
		err = runCmd(ctx, rest, env)
	case "forecast":
		err = forecastCmd(rest, env)
	case "notices":
		err = noticesCmd(rest, env)
	case "calllist":
		err = calllistCmd(rest, env)
	case "erase":
		err = eraseCmd(rest, env)
	case "call":
		err = callCmd(rest, env)
	case "resend":
		err = resendCmd(rest, env)
	case "bounce":
		err = bounceCmd(rest, env)
	case "health":
		err = healthCmd(ctx, rest, env)
	case "user":
		err = userCmd(rest, env)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(env.Stderr, "renewals: unknown command %q: run 'renewals help' for the list.\n", cmd)
		return ExitError
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "renewals %s: %v\n", cmd, err)
		if _, ok := errors.AsType[rejected](err); ok {
			return ExitRejected
		}
		return ExitError
	}
	return ExitOK
}

// rejected is the error of a command that ran and was refused, e.g. for an
// unknown subscription id: exit status 1 rather than 2.
type rejected struct{ error }

// notFound reports whether err is the server's 404 answer.
func notFound(err error) bool {
	se, ok := errors.AsType[*serverError](err)
	return ok && se.status == http.StatusNotFound
}

// clientFlags registers the flags every client subcommand shares.
func clientFlags(fs *flag.FlagSet, env Env) (server, dataDir *string) {
	server = fs.String("server", or(env.Getenv("RENEWALS_SERVER"), "http://127.0.0.1:8080"), "server address (RENEWALS_SERVER)")
	dataDir = fs.String("data-dir", or(env.Getenv("RENEWALS_DATA_DIR"), "./data"), "where the server keeps api-token, read when RENEWALS_API_TOKEN is unset (RENEWALS_DATA_DIR)")
	return server, dataDir
}

// newFlagSet returns the flag set of one subcommand. Its --help goes to
// stdout (it was asked for); a flag error is reported by the caller in one
// sentence, without the whole usage.
func newFlagSet(name, synopsis string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fs.SetOutput(env.Stdout)
		defer fs.SetOutput(io.Discard)
		fmt.Fprintf(env.Stdout, "Usage: renewals %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse reads flags before and after the positional arguments (`import
// FILE --format csv` as well as `import --format csv FILE`); after "--"
// everything is an argument. A lone "-" is an argument, as for standard
// input.
func parse(fs *flag.FlagSet, args []string, positional int) error {
	help := fs.Usage
	fs.Usage = func() {} // flag calls it on errors too: print only when asked
	defer func() { fs.Usage = help }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				help()
				return err
			}
			return fmt.Errorf("%s: see 'renewals %s --help'", flagError(fs, err), fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if len(pos) != positional {
		return wrongArgs(fs.Name(), positional, len(pos))
	}
	return fs.Parse(append([]string{"--"}, pos...)) // so that fs.Arg reads them
}

// flagError is the flag package's complaint about a flag, with the flag
// written as the help writes it (--as-of, not -as-of), and an unknown flag
// that differs from one of fs's only in dashes or case named by it.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		msg = "unknown flag --" + name
		squash := func(s string) string { return strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s)) }
		fs.VisitAll(func(f *flag.Flag) {
			if squash(f.Name) == squash(name) {
				msg += " (did you mean --" + f.Name + "?)"
			}
		})
		return msg
	}
	for _, p := range []string{"for flag -", "for -", "needs an argument: -"} {
		msg = strings.Replace(msg, p, p+"-", 1)
	}
	return msg
}

// checkDate says, by the flag's name, what is wrong with a date flag's
// value; an empty one (not given) is fine.
func checkDate(name, v string) error {
	if v == "" {
		return nil
	}
	if _, err := subscription.ParseDate(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// wrongArgs says how many arguments a command takes, and how many it got.
func wrongArgs(name string, want, got int) error {
	words := func(n int, none, one, many string) string {
		switch n {
		case 0:
			return none
		case 1:
			return one
		}
		return fmt.Sprintf(many, n)
	}
	return fmt.Errorf("it takes %s, and %s: see 'renewals %s --help'", words(want, "no arguments", "one argument", "%d arguments"),
		words(got, "none was given", "1 was given", "%d were given"), name)
}

func importCmd(args []string, env Env) int {
	fs := newFlagSet("import", "import [flags] FILE\n\nImports subscriptions from FILE (.csv with a header row, separated by commas, semicolons\nor tabs, in UTF-8, UTF-16 or Windows-1252; an .xlsx workbook; .json holding an array;\nor .ndjson), or from standard input when FILE is -, and prints the import report.\nThe vendor's export (e.g. Autodesk's, \"Subscription ID\", \"Seat Quantity\") is understood\nas it is; map any other layout with --map. Exit status 1 when rows or the file were rejected.", env)
	server, dataDir := clientFlags(fs, env)
	format := fs.String("format", "", "csv, json, ndjson or xlsx: the format of FILE, needed when its name does not end in .csv, .tsv, .txt,\n.xlsx, .json or .ndjson (e.g. /dev/stdin); for - the server tells it from the content when not given")
	mapFile := fs.String("map", "", "a column map FILE for a layout the import does not know: one `their column = our field` a line")
	sheet := fs.String("sheet", "", "the workbook's sheet to read (default the first)")
	dateFormat := fs.String("date-format", "", "DD/MM/YYYY or MM/DD/YYYY: the order of dates written with slashes, when the file's rows do not tell it")
	quiet := fs.Bool("quiet", false, "no progress output")
	progressOver := fs.Int64("progress-over", 4<<20, "show progress on stderr for files larger than this many bytes")
	if err := parse(fs, args, 1); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(env.Stderr, "renewals import: %v\n", err)
		return ExitError
	}
	fail := importFailer(env, "import")
	path := fs.Arg(0)
	in, size, closeIn, err := openImport(path, env.Stdin)
	if err != nil {
		return fail(err)
	}
	defer closeIn()
	contentType, err := contentTypeOf(path, *format)
	if err != nil {
		return fail(err)
	}
	q, err := importQuery(*mapFile, *sheet, *dateFormat, importer.ParseMap)
	if err != nil {
		return fail(err)
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return fail(err)
	}
	body := &countingReader{r: in}
	stop := func() {}
	if !*quiet && size > *progressOver {
		stop = progress(env.Stderr, path, body, size)
	}
	var report importer.Report
	err = c.do(http.MethodPost, withQuery("/api/v1/subscriptions/import", q), contentType, body, &report)
	stop()
	if err != nil {
		return fail(err)
	}
	fmt.Fprint(env.Stdout, report.Text())
	if report.Rejected > 0 {
		return ExitRejected
	}
	return ExitOK
}

func importUsageCmd(args []string, env Env) int {
	fs := newFlagSet("import-usage", "import-usage [flags] FILE\n\nImports the vendor's seat-usage export (.csv or .xlsx, one row per user and product,\nnaming the subscription, or the contract and product, and the day each user last used\nit or the days since) from FILE, or from standard input when FILE is -. Each subscription\nkeeps only the counts of seats unused for 30, 60 and 90 days: no user's name or address.\nExit status 1 when rows or the file were rejected.", env)
	server, dataDir := clientFlags(fs, env)
	asOf := fs.String("as-of", "", "the day the export was taken (YYYY-MM-DD): days inactive are reckoned to it (default today)")
	format := fs.String("format", "", "csv or xlsx, when FILE's name does not tell")
	mapFile := fs.String("map", "", "a column map FILE: one `their column = our field` a line, our fields being subscription_id,\ncontract_number, product, last_used and days_inactive")
	sheet := fs.String("sheet", "", "the workbook's sheet to read (default the first)")
	dateFormat := fs.String("date-format", "", "DD/MM/YYYY or MM/DD/YYYY: the order of dates written with slashes, when the rows do not tell it")
	if err := parse(fs, args, 1); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintf(env.Stderr, "renewals import-usage: %v\n", err)
		return ExitError
	}
	fail := importFailer(env, "import-usage")
	path := fs.Arg(0)
	in, _, closeIn, err := openImport(path, env.Stdin)
	if err != nil {
		return fail(err)
	}
	defer closeIn()
	contentType, err := contentTypeOf(path, *format)
	if err != nil {
		return fail(err)
	}
	q, err := importQuery(*mapFile, *sheet, *dateFormat, importer.ParseUsageMap)
	if err != nil {
		return fail(err)
	}
	if err := checkDate("--as-of", *asOf); err != nil {
		return fail(err)
	}
	if *asOf != "" {
		q.Set("as_of", *asOf)
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return fail(err)
	}
	path = withQuery("/api/v1/usage/import", q)
	var report importer.UsageReport
	if err := c.do(http.MethodPost, path, contentType, in, &report); err != nil {
		return fail(err)
	}
	fmt.Fprint(env.Stdout, report.Text())
	if report.Rejected > 0 {
		return ExitRejected
	}
	return ExitOK
}

// importQuery is an import's query: the column map (read with parseMap and
// checked here, so that a mistake in it is told before the file is sent),
// the sheet and the date format.
func importQuery(mapFile, sheet, dateFormat string, parseMap func(io.Reader) (map[string]string, error)) (url.Values, error) {
	q := url.Values{}
	if mapFile != "" {
		f, err := os.Open(mapFile)
		if err != nil {
			return nil, fmt.Errorf("--map: cannot read %s (%v): check the path", mapFile, errors.Unwrap(err))
		}
		defer f.Close()
		m, err := parseMap(f)
		if err != nil {
			return nil, fmt.Errorf("--map %s: %w", mapFile, err)
		}
		for _, kv := range importer.MapArg(m) {
			q.Add("map", kv)
		}
	}
	if dateFormat != "" {
		df, err := importer.ParseDateFormat(dateFormat)
		if err != nil {
			return nil, fmt.Errorf("--date-format: %w", err)
		}
		q.Set("date_format", string(df))
	}
	if sheet != "" {
		q.Set("sheet", sheet)
	}
	return q, nil
}

// withQuery is path with q, when q holds anything.
func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// importFailer returns how an import command ends on err: the sentence on
// stderr, and exit status 1 when the server refused the file (422), else 2.
func importFailer(env Env, cmd string) func(error) int {
	return func(err error) int {
		fmt.Fprintf(env.Stderr, "renewals %s: %v\n", cmd, err)
		if se, ok := errors.AsType[*serverError](err); ok && se.status == http.StatusUnprocessableEntity {
			return ExitRejected
		}
		return ExitError
	}
}

// openImport opens the file an import reads, or standard input for "-",
// and its size when known (0 for standard input, a pipe or a device).
func openImport(path string, stdin io.Reader) (in io.Reader, size int64, closeFn func(), err error) {
	if path == "-" {
		return stdin, 0, func() {}, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil, fmt.Errorf("%s does not exist: check the path", path)
	}
	if err != nil {
		return nil, 0, nil, fmt.Errorf("cannot read %s (%v): check the path and its permissions", path, errors.Unwrap(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("cannot read %s (%v): check the path and its permissions", path, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, nil, fmt.Errorf("%s is a directory: name the file to import", path)
	}
	size = st.Size()
	if !st.Mode().IsRegular() {
		size = 0 // a pipe or a device, such as /dev/stdin
	}
	return f, size, func() { f.Close() }, nil
}

// contentTypeOf returns the Content-Type of an import: that of --format
// when given, else of the file name's extension; "" for standard input
// without --format, which the server then tells from the content.
func contentTypeOf(path, format string) (string, error) {
	ext := strings.ToLower(filepath.Ext(path))
	if format != "" {
		f, err := importer.ParseFormat(format)
		if err != nil {
			return "", fmt.Errorf("--format: %w", err)
		}
		ext = "." + string(f)
		if f == importer.FormatAuto {
			ext = ""
		}
	} else if path == "-" {
		return "", nil
	}
	switch ext {
	case ".csv", ".tsv", ".txt":
		return "text/csv", nil
	case ".xlsx":
		return api.ContentTypeXLSX, nil
	case ".json":
		return "application/json", nil
	case ".ndjson", ".jsonl":
		return "application/x-ndjson", nil
	case "":
		if format != "" { // --format auto
			return "", nil
		}
	case ".xls", ".xlsb", ".ods", ".numbers":
		return "", fmt.Errorf("%s: %s workbooks cannot be imported: save it as an Excel Workbook (.xlsx) or as CSV UTF-8 (Comma delimited), and import that file", path, ext)
	case ".pdf", ".doc", ".docx", ".odt":
		return "", fmt.Errorf("%s: %s documents cannot be imported: export the subscriptions from where they came from as CSV UTF-8 (Comma delimited) or an Excel Workbook (.xlsx), and import that file", path, ext)
	}
	return "", fmt.Errorf("%s: name the file .csv, .xlsx, .json (an array) or .ndjson so its format is known, or give it with --format csv, xlsx, json or ndjson", path)
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progress prints on w how much of the file was sent: a first line at once,
// then every second while the server reads it. The server imports as it
// reads, so the bytes sent are the import's progress. stop ends it with what
// was actually sent.
func progress(w io.Writer, path string, c *countingReader, total int64) (stop func()) {
	fmt.Fprintf(w, "importing %s (%s): progress every second\n", path, mb(total))
	done := make(chan struct{})
	finished := make(chan struct{})
	line := func() string {
		n := c.n.Load()
		return fmt.Sprintf("sent %s of %s (%d%%)", mb(n), mb(total), n*100/max(total, 1))
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintf(w, "\r%s\n", line())
				return
			case <-t.C:
				fmt.Fprintf(w, "\r%s", line())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// mb writes a byte count in megabytes, to one decimal.
func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

func runCmd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("run", "run [--as-of YYYY-MM-DD] [--dry-run] [--wait [--timeout DURATION]]\n\nRuns one scheduler pass now: publishes every notice due today (or on --as-of)\nthat was not sent yet. With --wait, returns when each has a final outcome;\nCtrl-C (or SIGTERM) stops waiting at once, and the server carries on.", env)
	server, dataDir := clientFlags(fs, env)
	asOf := fs.String("as-of", "", "run as if today were this date (YYYY-MM-DD)")
	dry := fs.Bool("dry-run", false, "list what is due without publishing anything")
	wait := fs.Bool("wait", false, "return only when every published notice has a final outcome")
	timeout := fs.Duration("timeout", 0, "with --wait: stop waiting after this long (e.g. 90s, 10m) and say what is still open, exit 1; 0 waits as long as the server allows")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := checkDate("--as-of", *asOf); err != nil {
		return err
	}
	if *timeout < 0 || *timeout > 0 && !*wait {
		return fmt.Errorf("--timeout needs --wait and a positive duration such as 90s: see 'renewals run --help'")
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	c.ctx = ctx
	req := api.RunRequest{AsOf: *asOf, DryRun: *dry, Wait: *wait}
	if *timeout > 0 {
		req.Timeout = timeout.String()
	}
	var res api.RunResponse
	if err := c.do(http.MethodPost, "/api/v1/scheduler/run", "application/json", jsonBody(req), &res); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped waiting: the server carries on with the pass; 'renewals notices --subscription ID' shows the outcomes")
		}
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, res)
	}
	day := "today"
	if *asOf != "" {
		day = *asOf
	}
	fmt.Fprintf(env.Stdout, "pass for %s: %d subscriptions in the window, %d due, %d already sent\n", day, res.Considered, res.Due, res.AlreadySent)
	if *dry {
		// The server lists them by days left, then key: most urgent first.
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
		for _, n := range res.Notices {
			what := "would be sent to the contract manager"
			if !n.Reachable {
				what = "undeliverable: no contract manager email"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", n.Key, daysLeft(n.DaysLeft), what)
		}
		return tw.Flush()
	}
	fmt.Fprintf(env.Stdout, "published %d, %d already published within the duplicate window\n", res.Published, res.Duplicates)
	if *wait {
		fmt.Fprintf(env.Stdout, "outcomes: %d sent, %d skipped, %d failed, %d undeliverable\n",
			res.Outcomes["sent"], res.Outcomes["skipped"], res.Outcomes["failed"], res.Outcomes["undeliverable"])
	}
	if res.Open > 0 {
		return rejected{errors.New(res.StillOpen)}
	}
	return nil
}

func forecastCmd(args []string, env Env) error {
	fs := newFlagSet("forecast", "forecast [--from YYYY-MM-DD] [--days N]\n\nLists the notices that would go out, day by day, from --from for --days days.", env)
	server, dataDir := clientFlags(fs, env)
	from := fs.String("from", "", "first day (default today)")
	days := fs.Int("days", 14, "how many days, 1 to 366")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := checkDate("--from", *from); err != nil {
		return err
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	q := url.Values{"days": {fmt.Sprint(*days)}}
	if *from != "" {
		q.Set("from", *from)
	}
	var out struct {
		Days []struct {
			Date    string `json:"date"`
			Notices []struct {
				Key       string `json:"notice_key"`
				DaysLeft  int    `json:"days_left"`
				Reachable bool   `json:"reachable"`
			} `json:"notices"`
		} `json:"days"`
	}
	if err := c.do(http.MethodGet, "/api/v1/forecast?"+q.Encode(), "", nil, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, out)
	}
	for _, d := range out.Days {
		fmt.Fprintf(env.Stdout, "%s  %d notice(s)\n", d.Date, len(d.Notices))
		for _, n := range d.Notices {
			reach := "contract manager reachable"
			if !n.Reachable {
				reach = "NO contract manager email"
			}
			fmt.Fprintf(env.Stdout, "  %s  %d days left  %s\n", n.Key, n.DaysLeft, reach)
		}
	}
	return nil
}

func noticesCmd(args []string, env Env) error {
	fs := newFlagSet("notices", "notices [--subscription ID]\n\nPrints the ledger: each notice, its outcome, when and to which role; for one subscription,\nor for every subscription in its renewal period.", env)
	server, dataDir := clientFlags(fs, env)
	id := fs.String("subscription", "", "subscription id; without it, every subscription in its renewal period")
	asOf := fs.String("as-of", "", "with no --subscription: the renewal period as of this date (YYYY-MM-DD)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := checkDate("--as-of", *asOf); err != nil {
		return err
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	var out struct {
		Notices []struct {
			Key       string    `json:"notice_key"`
			Outcome   string    `json:"outcome"`
			Reason    string    `json:"reason"`
			Role      string    `json:"role"`
			At        time.Time `json:"at"`
			Attempts  int       `json:"attempts"`
			Ambiguous bool      `json:"ambiguous"`
			// History: the attempts a bounce or a resend replaced.
			History []subscription.Attempt `json:"history,omitempty"`
		} `json:"notices"`
	}
	path := "/api/v1/notices"
	switch {
	case *id != "":
		path += "?subscription_id=" + url.QueryEscape(*id)
	case *asOf != "":
		path += "?as_of=" + url.QueryEscape(*asOf)
	}
	if err := c.do(http.MethodGet, path, "", nil, &out); err != nil {
		return err
	}
	if *id != "" && len(out.Notices) == 0 {
		// The ledger of an id it never saw is as empty as that of a
		// subscription with nothing sent yet: ask the store which it is.
		err := c.do(http.MethodGet, "/api/v1/subscriptions/"+url.PathEscape(*id), "", nil, nil)
		if notFound(err) {
			return rejected{fmt.Errorf("subscription %s is unknown (or was erased): check the id, e.g. in 'renewals calllist'", *id)}
		}
		if err != nil {
			return err
		}
	}
	if *asJSON {
		return printJSON(env.Stdout, out)
	}
	if len(out.Notices) == 0 {
		scope := "for subscriptions in their renewal period"
		if *id != "" {
			scope = "for " + *id
		}
		fmt.Fprintln(env.Stdout, "no notices recorded "+scope)
	}
	for _, n := range out.Notices {
		line := fmt.Sprintf("%s  %-13s", n.Key, or(n.Outcome, "in progress"))
		if !n.At.IsZero() {
			line += "  " + n.At.Format(time.RFC3339)
		}
		if n.Role != "" {
			line += "  to " + strings.ReplaceAll(n.Role, "_", " ")
		}
		if n.Reason != "" {
			line += "  (" + n.Reason + ")"
		}
		if n.Ambiguous {
			line += "  AMBIGUOUS: may have been received twice"
		}
		fmt.Fprintln(env.Stdout, line)
		for _, a := range n.History {
			fmt.Fprintf(env.Stdout, "    earlier: %s  %s", a.Outcome, a.At.Format(time.RFC3339))
			if a.Reason != "" {
				fmt.Fprintf(env.Stdout, "  (%s)", a.Reason)
			}
			fmt.Fprintln(env.Stdout)
		}
	}
	return nil
}

func calllistCmd(args []string, env Env) error {
	fs := newFlagSet("calllist", "calllist [--format table|csv|json] [--rep NAME] [--min-days N] [--max-days N] [--as-of YYYY-MM-DD]\n\nPrints the call list: who to call about a renewal, most urgent first.", env)
	server, dataDir := clientFlags(fs, env)
	format := fs.String("format", "table", "table (aligned columns to read), csv (for a spreadsheet) or json")
	rep := fs.String("rep", "", "only this reseller rep's customers (reseller_rep, in any case)")
	var minDays, maxDays string
	days := func(dst *string) func(string) error {
		return func(v string) error {
			if _, err := strconv.Atoi(v); err != nil {
				return errors.New("give a whole number of days, e.g. 30 (negative for days since a lapse)")
			}
			*dst = v
			return nil
		}
	}
	fs.Func("min-days", "only entries with at least this many days left (negative: lapsed at most that many days ago)", days(&minDays))
	fs.Func("max-days", "only entries with at most this many days left", days(&maxDays))
	asOf := fs.String("as-of", "", "reckon days left as if today were this date (YYYY-MM-DD)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *format != "table" && *format != "csv" && *format != "json" {
		return fmt.Errorf("--format %q: use table, csv or json", *format)
	}
	if err := checkDate("--as-of", *asOf); err != nil {
		return err
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	// The filters are the API's: GET /api/v1/calllist does the filtering.
	q := url.Values{"format": {*format}}
	if *format == "table" {
		q.Set("format", "json")
	}
	for name, v := range map[string]string{"reseller_rep": *rep, "min_days": minDays, "max_days": maxDays, "as_of": *asOf} {
		if v != "" {
			q.Set(name, v)
		}
	}
	resp, err := c.send(http.MethodGet, "/api/v1/calllist?"+q.Encode(), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if *format != "table" {
		_, err = io.Copy(env.Stdout, resp.Body)
		return err
	}
	var list struct {
		Entries []calllist.Entry `json:"entries"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return fmt.Errorf("the server's call list is not JSON (%v): is --server pointing at renewals?", err)
	}
	return printCalllist(env.Stdout, list.Entries)
}

// printCalllist writes the call list as a table with aligned columns, the
// reason last since it is the longest.
func printCalllist(w io.Writer, entries []calllist.Entry) error {
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "nobody to call: no subscription in its renewal period matches")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tDAYS LEFT\tEND DATE\tSUBSCRIPTION\tCUSTOMER\tPRODUCT\tCONTRACT MANAGER\tPHONE\tREP\tREASON")
	for _, e := range entries {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Rank, e.DaysLeft, e.EndDate,
			cell(e.SubscriptionID), cell(e.Customer), cell(e.Product), cell(e.CMName), cell(e.CMPhone), cell(e.ResellerRep), cell(reasonCell(e)))
	}
	return tw.Flush()
}

// reasonCell is the reason, with the post-expiry stage and the last call
// when there are.
func reasonCell(e calllist.Entry) string {
	r := e.Reason
	if e.Stage != "" && e.Stage != subscription.StageCancelled && e.RenewBy != nil {
		r += fmt.Sprintf("; %s, can be renewed until %s", e.Stage, e.RenewBy)
	}
	if c := e.LastCall; c != nil && e.Category != calllist.Callback {
		r += fmt.Sprintf("; last call %s: %s", c.On, c.Outcome)
	}
	return r
}

// cell keeps a value on its line and in its column: imports refuse tabs and
// line breaks, but an SMTP reason may hold anything.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

func eraseCmd(args []string, env Env) error {
	fs := newFlagSet("erase", "erase ID\n\nErases the personal data of subscription ID (GDPR erasure); no notice goes out for it afterwards.", env)
	server, dataDir := clientFlags(fs, env)
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	c, err := newClient(*server, *dataDir, env.Getenv)
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	err = c.do(http.MethodDelete, "/api/v1/subscriptions/"+url.PathEscape(id), "", nil, nil)
	if notFound(err) {
		return rejected{fmt.Errorf("subscription %s is unknown or already erased: nothing was erased; check the id", id)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "erased the personal data of subscription %s\n", id)
	return nil
}

// daysLeft writes a count of days left as a person says it.
func daysLeft(n int) string {
	switch {
	case n == 1:
		return "1 day left"
	case n == -1:
		return "1 day ago"
	case n < 0:
		return fmt.Sprintf("%d days ago", -n)
	}
	return fmt.Sprintf("%d days left", n)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
