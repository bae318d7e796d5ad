package cli_test

import (
	"bytes"
	"context"
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

	"renewals/services/cli"
	"renewals/services/e2e"
)

// These tests run the client subcommands' real code against a real
// `renewals serve` (embedded NATS, the key-value store) started in process.

const sample = "../../deploy/sample/subscriptions.csv"

// run runs `renewals args...` against s with stdin as standard input.
func run(s *e2e.Server, stdin string, args ...string) e2e.Result {
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), args, cli.Env{
		Getenv: func(k string) string {
			switch k {
			case "RENEWALS_SERVER":
				return s.URL
			case "RENEWALS_DATA_DIR":
				return s.DataDir
			}
			return ""
		},
		Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr,
	})
	return e2e.Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
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
	want(t, "import", run(s, "", "import", sample), 0, "13 rows: 13 created", "")
	r := run(s, "", "run", "--as-of", "2026-12-01", "--dry-run")
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

	want(t, "import - (CSV, told by its content)", run(s, csvRows(1, 2), "import", "-"), 0, "2 rows: 2 created", "")
	want(t, "import - --format csv", run(s, csvRows(3), "import", "-", "--format", "csv"), 0, "1 row: 1 created", "")
	want(t, "import --format ndjson -", run(s, `{"subscription_id":"4","end_date":"2027-05-31"}`+"\n", "import", "--format", "ndjson", "-"), 0, "1 row: 1 created", "")
	want(t, "import - (a JSON array)", run(s, `[{"subscription_id":"5","end_date":"2027-05-31"}]`, "import", "-"), 0, "1 row: 1 created", "")
	want(t, "import - with a rejected row", run(s, csvRows(6)+"7,31/05/2027,x@y.example\n", "import", "-"), 1, "line 3: end_date:", "")
	want(t, "import - of a semicolon file", run(s, "subscription_id;end_date\n8;2027-05-31\n", "import", "-"), 1, "", "the separator is ';'")

	txt := filepath.Join(dir, "export.txt")
	if err := os.WriteFile(txt, []byte(csvRows(9)), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, "import export.txt --format csv", run(s, "", "import", txt, "--format", "csv"), 0, "1 row: 1 created", "")
	want(t, "import export.txt", run(s, "", "import", txt), 2, "", "or give it with --format csv, json or ndjson")
	want(t, "import --format xml", run(s, "", "import", "--format", "xml", txt), 2, "", `"xml" is not an import format: use csv, json or ndjson`)

	// A workbook renamed .csv is named for what it is.
	xlsx := filepath.Join(dir, "subs.csv")
	if err := os.WriteFile(xlsx, []byte("PK\x03\x04\x14\x00\x06\x00[Content_Types].xml....xl/workbook.xml"), 0o644); err != nil {
		t.Fatal(err)
	}
	want(t, "import of an .xlsx renamed .csv", run(s, "", "import", xlsx), 1, "", "this is an Excel workbook (.xlsx), not CSV: save it as CSV UTF-8")

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
	for _, id := range []string{"1", "4", "5", "9", "12"} {
		if code := s.API(t, http.MethodGet, "/api/v1/subscriptions/"+id, nil, nil); code != http.StatusOK {
			t.Errorf("subscription %s: GET answered %d, want it imported", id, code)
		}
	}
}

func TestUnknownIDsAreRejected(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	want(t, "import", run(s, "", "import", sample), 0, "13 rows: 13 created", "")

	want(t, "notices of an unknown id", run(s, "", "notices", "--subscription", "999999"), 1, "", "subscription 999999 is unknown")
	want(t, "notices --json of an unknown id", run(s, "", "notices", "--json", "--subscription", "999999"), 1, "", "subscription 999999 is unknown")
	want(t, "notices of a known id with none sent", run(s, "", "notices", "--subscription", "110001000011"), 0, "no notices recorded for 110001000011", "")
	want(t, "notices of an invalid id", run(s, "", "notices", "--subscription", "a/b"), 2, "", "is not a subscription id")

	want(t, "erase of an unknown id", run(s, "", "erase", "999999"), 1, "", "subscription 999999 is unknown or already erased")
	want(t, "erase", run(s, "", "erase", "110001000011"), 0, "erased the personal data of subscription 110001000011", "")
	want(t, "erase again", run(s, "", "erase", "110001000011"), 1, "", "subscription 110001000011 is unknown or already erased")
	want(t, "erase with the flag after the id", run(s, "", "erase", "110001000012", "--server", s.URL), 0, "erased", "")
}
