package cli_test

import (
	"bytes"
	"context"
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
