package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"

	"renewals/services/calllist"
	"renewals/services/e2e"
)

// These tests run the client subcommands' real code against a real
// `renewals serve` (embedded NATS, the key-value store) started in process.

const sample = "../../deploy/sample/subscriptions.csv"

// run runs `renewals args...` against s with stdin as standard input.
func run(t *testing.T, s *e2e.Server, stdin string, args ...string) e2e.Result {
	t.Helper()
	return s.CLIInput(t, stdin, args...)
}

func want(t *testing.T, what string, r e2e.Result, code int, stdout, stderr string) {
	t.Helper()
	if r.Code != code || !strings.Contains(r.Stdout, stdout) || !strings.Contains(r.Stderr, stderr) {
		t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q, stderr with %q",
			what, r.Code, r.Stdout, r.Stderr, code, stdout, stderr)
	}
	if code != 0 && strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
		t.Errorf("%s: stderr is more than one sentence: %q", what, r.Stderr)
	}
}

func TestDryRunListsMostUrgentFirst(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	want(t, "import", run(t, s, "", "import", sample), 0, "13 rows: 13 created", "")
	r := run(t, s, "", "run", "--as-of", "2026-12-01", "--dry-run")
	want(t, "run --dry-run", r, 0, "9 due", "")
	if strings.Contains(r.Stdout, "would send") {
		t.Errorf("dry run says \"would send\":\n%s", r.Stdout)
	}
	line := regexp.MustCompile(`^  (\d+):\d{4}-\d\d-\d\d:\d+ +(\d+) days? left +(would be sent to the contract manager|undeliverable: no contract manager email)$`)
	var days []int
	var undeliverable []string
	for _, l := range strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")[1:] {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("dry-run line %q is not key, days left, what happens:\n%s", l, r.Stdout)
		}
		n, _ := strconv.Atoi(m[2])
		days = append(days, n)
		if strings.HasPrefix(m[3], "undeliverable") {
			undeliverable = append(undeliverable, m[1])
		}
	}
	if len(days) != 9 || !slices.IsSorted(days) {
		t.Errorf("days left in the order listed: %v, want 9 from the fewest:\n%s", days, r.Stdout)
	}
	if !slices.Equal(undeliverable, []string{"110001000007"}) {
		t.Errorf("undeliverable: %v, want 110001000007, the one without a contract manager email:\n%s", undeliverable, r.Stdout)
	}
}

func csvRows(ids ...int) string {
	var b strings.Builder
	b.WriteString("subscription_id,end_date,cm_email\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d,2027-05-31,cm%d@x.example\n", id, id)
	}
	return b.String()
}

func TestImportFromStandardInputAndOtherNames(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	dir := t.TempDir()

	want(t, "import - (CSV, told by its content)", run(t, s, csvRows(1, 2), "import", "-"), 0, "2 rows: 2 created", "")
	want(t, "import - --format csv", run(t, s, csvRows(3), "import", "-", "--format", "csv"), 0, "1 row: 1 created", "")
	want(t, "import --format ndjson -", run(t, s, `{"subscription_id":"4","end_date":"2027-05-31"}`+"\n", "import", "--format", "ndjson", "-"), 0, "1 row: 1 created", "")
	want(t, "import - (a JSON array)", run(t, s, `[{"subscription_id":"5","end_date":"2027-05-31"}]`, "import", "-"), 0, "1 row: 1 created", "")
	want(t, "import - with a rejected row", run(t, s, csvRows(6)+"7,2027-02-30,x@y.example\n", "import", "-"), 1, "line 3: end_date:", "")
	want(t, "import - of a semicolon file", run(t, s, "subscription_id;end_date\n8;2027-05-31\n", "import", "-"), 0, "1 row: 1 created", "")

	txt := filepath.Join(dir, "export.dat")
	if err := os.WriteFile(txt, []byte(csvRows(9)), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, "import export.dat --format csv", run(t, s, "", "import", txt, "--format", "csv"), 0, "1 row: 1 created", "")
	want(t, "import export.dat", run(t, s, "", "import", txt), 2, "", "or give it with --format csv, xlsx, json or ndjson")
	want(t, "import --format xml", run(t, s, "", "import", "--format", "xml", txt), 2, "", `"xml" is not an import format: use csv, json, ndjson or xlsx`)
	for name, msg := range map[string]string{
		"old.xls":  ".xls workbooks cannot be imported: save it as an Excel Workbook (.xlsx) or as CSV UTF-8",
		"list.pdf": ".pdf documents cannot be imported: export the subscriptions from where they came from as CSV UTF-8",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("not text"), 0o644); err != nil {
			t.Fatal(err)
		}
		want(t, "import "+name, run(t, s, "", "import", path), 2, "", msg)
	}

	// A workbook renamed .csv is named for what it is.
	xlsx := filepath.Join(dir, "subs.csv")
	if err := os.WriteFile(xlsx, []byte("PK\x03\x04\x14\x00\x06\x00[Content_Types].xml....xl/workbook.xml"), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, "import of an .xlsx renamed .csv", run(t, s, "", "import", xlsx), 1, "", "this is an Excel workbook (.xlsx), not CSV: name the file .xlsx")

	// A real workbook, its second sheet, through the server.
	book := excelize.NewFile()
	book.SetSheetName("Sheet1", "Notes")
	book.NewSheet("Subs")
	book.SetSheetRow("Subs", "A1", &[]any{"Subscription ID", "End Date", "Seat Quantity", "Subscription Status"})
	book.SetSheetRow("Subs", "A2", &[]any{"13", "2027-05-31", 4, "Active"})
	wb := filepath.Join(dir, "export.xlsx")
	if err := book.SaveAs(wb); err != nil {
		t.Fatal(err)
	}
	want(t, "import export.xlsx --sheet Subs", run(t, s, "", "import", wb, "--sheet", "Subs"), 0, "1 row: 1 created", "")
	want(t, "import export.xlsx --sheet Nope", run(t, s, "", "import", wb, "--sheet", "Nope"), 1, "", `the workbook has no sheet named "Nope"`)

	// A layout of its own, through a column map; dates told by --date-format.
	mapFile := filepath.Join(dir, "crm.map")
	if err := os.WriteFile(mapFile, []byte("Serial = subscription_id\nExpires = end_date\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, "import --map of ambiguous dates", run(t, s, "Serial,Expires\n14,03/04/2027\n", "import", "-", "--map", mapFile), 1, "", "--date-format DD/MM/YYYY")
	want(t, "import --map --date-format", run(t, s, "Serial,Expires\n14,03/04/2027\n", "import", "-", "--map", mapFile, "--date-format", "dd/mm/yyyy"), 0, "1 row: 1 created", "")
	var got struct {
		EndDate string `json:"end_date"`
	}
	if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/14", nil, &got); code != http.StatusOK || got.EndDate != "2027-04-03" {
		t.Errorf("subscription 14: %d, end date %q, want 2027-04-03", code, got.EndDate)
	}
	want(t, "import --map of a bad map", run(t, s, "", "import", "-", "--map", txt), 2, "", "--map "+txt+": line 1:")

	// /dev/stdin is the real binary's standard input.
	cmd := exec.Command(e2e.Binary(t), "import", "/dev/stdin", "--format", "csv")
	cmd.Env = append(os.Environ(), "RENEWALS_SERVER="+s.URL, "RENEWALS_DATA_DIR="+s.DataDir, "RENEWALS_API_TOKEN=")
	cmd.Stdin = strings.NewReader(csvRows(10, 11, 12))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || !strings.HasPrefix(stdout.String(), "3 rows: 3 created") {
		t.Errorf("renewals import /dev/stdin --format csv: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	for _, id := range []string{"1", "4", "5", "8", "9", "12", "13"} {
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/"+id, nil, nil); code != http.StatusOK {
			t.Errorf("subscription %s: GET answered %d, want it imported", id, code)
		}
	}
}

// A mistyped command line gets one sentence, its flags written as the help
// writes them, with the flag meant when only dashes or case were wrong.
func TestCommandLineMistakes(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--asof", "2027-01-01"}, "renewals run: unknown flag --asof (did you mean --as-of?): see 'renewals run --help'"},
		{[]string{"run", "--Dry-Run"}, "unknown flag --Dry-Run (did you mean --dry-run?)"},
		{[]string{"run", "--colour"}, "renewals run: unknown flag --colour: see 'renewals run --help'"},
		{[]string{"run", "--as-of"}, "flag needs an argument: --as-of"},
		{[]string{"notices", "--json=maybe"}, `invalid boolean value "maybe" for --json`},
		{[]string{"import"}, "renewals import: it takes one argument, and none was given: see 'renewals import --help'"},
		{[]string{"run", "today", "now"}, "renewals run: it takes no arguments, and 2 were given"},
		{[]string{"run", "--as-of", "31/12/2027"}, `renewals run: --as-of: "31/12/2027" is not a date: use YYYY-MM-DD`},
		{[]string{"notices", "--as-of", "tomorrow"}, `renewals notices: --as-of: "tomorrow" is not a date`},
		{[]string{"calllist", "--as-of", "2027-13-01"}, `renewals calllist: --as-of: "2027-13-01" is not a date`},
		{[]string{"forecast", "--from", "1/1/2027"}, `renewals forecast: --from: "1/1/2027" is not a date`},
		{[]string{"user"}, "renewals user add NAME --role viewer|operator (the password is read from the terminal, or the first line of standard input)"},
	} {
		want(t, strings.Join(tc.args, " "), run(t, s, "", tc.args...), 2, "", tc.want)
	}
	want(t, "user --help", run(t, s, "", "user", "--help"), 0, "Usage: renewals user add NAME --role viewer|operator", "")
}

func TestUnknownIDsAreRejected(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	want(t, "import", run(t, s, "", "import", sample), 0, "13 rows: 13 created", "")

	want(t, "notices of an unknown id", run(t, s, "", "notices", "--subscription", "999999"), 1, "", "subscription 999999 is unknown")
	want(t, "notices --json of an unknown id", run(t, s, "", "notices", "--json", "--subscription", "999999"), 1, "", "subscription 999999 is unknown")
	want(t, "notices of a known id with none sent", run(t, s, "", "notices", "--subscription", "110001000011"), 0, "no notices recorded for 110001000011", "")
	want(t, "notices of an invalid id", run(t, s, "", "notices", "--subscription", "a/b"), 2, "", "is not a subscription id")

	want(t, "erase of an unknown id", run(t, s, "", "erase", "999999"), 1, "", "subscription 999999 is unknown or already erased")
	want(t, "erase", run(t, s, "", "erase", "110001000011"), 0, "erased the personal data of subscription 110001000011", "")
	want(t, "erase again", run(t, s, "", "erase", "110001000011"), 1, "", "subscription 110001000011 is unknown or already erased")
	want(t, "erase with the flag after the id", run(t, s, "", "erase", "110001000012", "--server", s.URL), 0, "erased", "")
}

func TestCalllistTableAndFilters(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	want(t, "import", run(t, s, "", "import", sample), 0, "13 rows: 13 created", "")

	// The API's own answer for each filter is what the table must show.
	apiIDs := func(query string) []string {
		t.Helper()
		var out struct {
			Entries []calllist.Entry `json:"entries"`
		}
		if code := s.API(t, http.MethodGet, "/api/v1/calllist?"+query, nil, &out); code != http.StatusOK {
			t.Fatalf("GET /api/v1/calllist?%s: %d", query, code)
		}
		var ids []string
		for _, e := range out.Entries {
			ids = append(ids, e.SubscriptionID)
		}
		return ids
	}
	for _, c := range []struct {
		args  []string
		query string
	}{
		{nil, "as_of=2026-12-01"},
		{[]string{"--rep", "sam"}, "as_of=2026-12-01&reseller_rep=sam"},
		{[]string{"--min-days", "40", "--max-days", "60"}, "as_of=2026-12-01&min_days=40&max_days=60"},
		{[]string{"--max-days", "-1"}, "as_of=2026-12-01&max_days=-1"},
	} {
		args := append([]string{"calllist", "--as-of", "2026-12-01"}, c.args...)
		r := run(t, s, "", args...)
		wantIDs := apiIDs(c.query)
		if r.Code != 0 {
			t.Errorf("%v: exit %d %s", args, r.Code, r.Stderr)
			continue
		}
		if len(wantIDs) == 0 {
			if !strings.HasPrefix(r.Stdout, "nobody to call") {
				t.Errorf("%v: an empty list prints %q", args, r.Stdout)
			}
			continue
		}
		ids := checkTable(t, strings.Join(args, " "), r.Stdout)
		if !slices.Equal(ids, wantIDs) {
			t.Errorf("%v: table lists %v, the API %v", args, ids, wantIDs)
		}
	}
	if ids := apiIDs("as_of=2026-12-01&min_days=40&max_days=60"); len(ids) == 0 || len(ids) == len(apiIDs("as_of=2026-12-01")) {
		t.Errorf("the days filter keeps %v: the test needs it to keep some but not all", ids)
	}

	r := run(t, s, "", "calllist", "--format", "json", "--rep", "jo", "--as-of", "2026-12-01")
	var list struct {
		Entries []calllist.Entry `json:"entries"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &list); r.Code != 0 || err != nil || len(list.Entries) == 0 {
		t.Errorf("calllist --format json: exit %d, %v\n%s", r.Code, err, r.Stdout)
	}
	for _, e := range list.Entries {
		if e.ResellerRep != "Jo" {
			t.Errorf("--rep jo lists %s of rep %q", e.SubscriptionID, e.ResellerRep)
		}
	}
	if r := run(t, s, "", "calllist", "--format", "csv", "--as-of", "2026-12-01"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "\uFEFFrank,category,reason,") {
		t.Errorf("calllist --format csv: exit %d, starts %q", r.Code, r.Stdout[:min(len(r.Stdout), 30)])
	}
	want(t, "calllist --format xml", run(t, s, "", "calllist", "--format", "xml"), 2, "", "use table, csv or json")
	want(t, "calllist --min-days soon", run(t, s, "", "calllist", "--min-days", "soon"), 2, "", "give a whole number of days")
	want(t, "calllist --as-of 01/12/2026", run(t, s, "", "calllist", "--as-of", "01/12/2026"), 2, "", `--as-of: "01/12/2026" is not a date`)
}

// checkTable checks that the table's columns line up under its header and
// returns the subscription ids in the order listed.
func checkTable(t *testing.T, what, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	header := lines[0]
	cols := []string{"DAYS LEFT", "END DATE", "SUBSCRIPTION", "CUSTOMER", "PRODUCT", "CONTRACT MANAGER", "PHONE", "REP", "REASON"}
	if !strings.HasPrefix(header, "#") {
		t.Fatalf("%s: header %q", what, header)
	}
	var ids []string
	for _, line := range lines[1:] {
		// Every column starts where its header does, after two spaces:
		// columns are counted in characters, as a terminal shows them.
		l := []rune(line)
		for _, c := range cols {
			at := len([]rune(header[:strings.Index(header, c)]))
			if at < 2 || len(l) <= at || string(l[at-2:at]) != "  " || l[at] == ' ' {
				t.Fatalf("%s: column %s does not line up:\n%s", what, c, out)
			}
		}
		at := len([]rune(header[:strings.Index(header, "SUBSCRIPTION")]))
		ids = append(ids, strings.Fields(string(l[at:]))[0])
	}
	return ids
}
