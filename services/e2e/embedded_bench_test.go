package e2e_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"renewals/pkg/importer"
	"renewals/services/e2e"
)

// embeddedRowsEnv sets the rows BenchmarkEmbeddedDefault imports (a quarter
// of them are due on embeddedAsOf).
const (
	embeddedRowsEnv = "RENEWALS_BENCH_EMBEDDED_ROWS"
	embeddedAsOf    = "2027-01-01"
)

// BenchmarkEmbeddedDefault measures the embedded default, `renewals serve`
// with no other server: JetStream key-value store and ledger in the
// embedded NATS server, each email an .eml file in the outbox (written and
// fsynced). It imports generated CSV rows through the API, then runs the
// pass of 2027-01-01 with --wait, which sends the notices of the quarter of
// the rows that end in January to March; and reports rows/s and emails/s.
// It does so twice in one run, with JetStream syncing every write
// (RENEWALS_NATS_SYNC=always, the default) and every two minutes
// (nats-server's own default, which the embedded server ran with before),
// so that the cost of the sync is read from one run. Run it with
// -benchtime=1x (make bench).
func BenchmarkEmbeddedDefault(b *testing.B) {
	rows := 20_000
	if v := os.Getenv(embeddedRowsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		rows = n
	}
	for _, sync := range []string{"2m", "always"} {
		b.Run("nats-sync="+sync, func(b *testing.B) {
			var rowsPerSec, emailsPerSec float64
			for range b.N {
				rowsPerSec, emailsPerSec = embeddedOnce(b, sync, rows)
			}
			b.ReportMetric(rowsPerSec, "rows/s")
			b.ReportMetric(emailsPerSec, "emails/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func embeddedOnce(b *testing.B, sync string, rows int) (rowsPerSec, emailsPerSec float64) {
	b.StopTimer()
	s := e2e.Start(b, e2e.Options{Env: map[string]string{"RENEWALS_NATS_SYNC": sync}})
	defer s.Stop(b)
	b.StartTimer()

	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/v1/subscriptions/import", generate(rows))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Authorization", "Bearer "+s.Token(b))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var rep importer.Report
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	imported := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK || rep.Created != rows {
		b.Fatalf("import of %d rows: %d %v, report %+v", rows, resp.StatusCode, err, rep)
	}

	start = time.Now()
	r := s.CLI(b, "run", "--as-of", embeddedAsOf, "--wait", "--json")
	sent := time.Since(start)
	if r.Code != 0 {
		b.Fatalf("run --as-of %s --wait: exit %d\n%s%s", embeddedAsOf, r.Code, r.Stdout, r.Stderr)
	}
	var res struct {
		Published int            `json:"published"`
		Outcomes  map[string]int `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		b.Fatalf("run --json: %v\n%s", err, r.Stdout)
	}
	if res.Published == 0 || res.Outcomes["sent"] != res.Published {
		b.Fatalf("run --as-of %s: published %d, outcomes %v: want every one sent", embeddedAsOf, res.Published, res.Outcomes)
	}
	if n := len(s.Outbox(b)); n != res.Published {
		b.Fatalf("%d emails in the outbox, want %d", n, res.Published)
	}
	b.Logf("nats-sync=%s: %d rows imported in %v (%.0f rows/s); %d emails sent in %v (%.0f emails/s)",
		sync, rows, imported.Round(time.Millisecond), float64(rows)/imported.Seconds(),
		res.Published, sent.Round(time.Millisecond), float64(res.Published)/sent.Seconds())
	return float64(rows) / imported.Seconds(), float64(res.Published) / sent.Seconds()
}
