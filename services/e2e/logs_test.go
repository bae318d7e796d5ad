package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// TestLogsHoldNoPersonalData runs a whole flow (import with names, emails and
// phones; a pass that sends, fails with a 550 and finds one undeliverable)
// and fails on any personal value in a log line at info or above.
func TestLogsHoldNoPersonalData(t *testing.T) {
	t.Parallel()
	smtp := testenv.SMTP(t)
	smtp.Inject(testenv.Fault{Rcpt: "bounce.owner@example.org", Stage: testenv.StageRcpt, Code: 550})
	s := e2e.Start(t, e2e.Options{Env: map[string]string{"RENEWALS_SMTP_URL": smtp.URL()}})

	personal := []string{
		"Philippa Quennell-Ashdown", "philippa.q@example.com", "+44 20 7946 0101",
		"Bartholomew Okonkwo-Reyes", "bounce.owner@example.org", "+44 20 7946 0202",
		"Zuzanna Wierzbicka", "zuzanna.admin@example.com",
		"secondary.one@example.com", "secondary.two@example.com",
		"Ignatius Featherstonehaugh", "+44 20 7946 0303",
	}
	csv := "subscription_id,end_date,cm_name,cm_email,cm_phone,pa_name,pa_email,sa_emails,product\n" +
		"330000000001,2030-01-31,Philippa Quennell-Ashdown,philippa.q@example.com,+44 20 7946 0101,Zuzanna Wierzbicka,zuzanna.admin@example.com,secondary.one@example.com;secondary.two@example.com,Design Suite\n" +
		"330000000002,2030-01-31,Bartholomew Okonkwo-Reyes,bounce.owner@example.org,+44 20 7946 0202,,,,Design Suite\n" +
		"330000000003,2030-01-31,Ignatius Featherstonehaugh,,+44 20 7946 0303,,,,Design Suite\n"
	path := filepath.Join(t.TempDir(), "people.csv")
	if err := os.WriteFile(path, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := s.CLI(t, "import", path); res.Code != 0 {
		t.Fatalf("import: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
	res := s.CLI(t, "run", "--as-of", "2030-01-01", "--wait")
	if res.Code != 0 {
		t.Fatalf("run --wait: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
	if got := len(smtp.Messages()); got != 1 {
		t.Errorf("%d messages sent, want 1 (one sent, one 550, one undeliverable)", got)
	}
	s.Stop(t) // the shutdown lines too

	var lines, checked int
	sawFailed, sawUndeliverable := false, false
	for line := range strings.SplitSeq(s.Logs(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the start-up banner
		}
		lines++
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %v: %s", err, line)
			continue
		}
		level, _ := rec["level"].(string)
		if level == "debug" {
			continue
		}
		checked++
		msg, _ := rec["msg"].(string)
		sawFailed = sawFailed || strings.Contains(msg, "failed")
		sawUndeliverable = sawUndeliverable || strings.Contains(msg, "undeliverable")
		for _, p := range personal {
			if strings.Contains(strings.ToLower(line), strings.ToLower(p)) {
				t.Errorf("%s log line holds personal data %q: %s", level, p, line)
			}
		}
		// Parts of a name, the local part of an address and the phones'
		// digits, too; but not in the timestamp and durations, whose digits
		// would match a phone's by chance.
		delete(rec, "ts")
		delete(rec, "took")
		fields, _ := json.Marshal(rec)
		for _, p := range []string{"Quennell", "Okonkwo", "Wierzbicka", "Featherstonehaugh", "philippa.q", "bounce.owner", "7946"} {
			if strings.Contains(string(fields), p) {
				t.Errorf("%s log line holds part of personal data %q: %s", level, p, line)
			}
		}
	}
	if checked == 0 || !sawFailed || !sawUndeliverable {
		t.Errorf("%d JSON lines, %d at info or above, failed logged %v, undeliverable logged %v: the flow did not log what it should",
			lines, checked, sawFailed, sawUndeliverable)
	}
	t.Logf("%d log lines, %d at info or above, none with personal data", lines, checked)
}
