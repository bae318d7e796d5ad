package e2e_test

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/services/e2e"
)

// portfolio writes a CSV of n subscriptions whose end dates run evenly
// from a year before today to two years after it (a reseller's book of
// annual and three-year terms), so that the renewal window holds its share
// whatever day the benchmark runs.
func portfolio(n int) io.Reader {
	today := subscription.Today(time.Now(), time.UTC)
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 64<<10)
		w.WriteString(benchHeader)
		var row []byte
		for i := range n {
			row = benchRow(row[:0], i)
			copy(row[13:23], today.AddDays(-365+i*3*365/n).String())
			if _, err := w.Write(row); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(w.Flush())
	}()
	return pr
}

// BenchmarkConsolePages times each page of the console, signed in, with
// 100,000 subscriptions in the embedded store (about 11,000 of them in the
// renewal window) and their first notices sent: each should answer in
// under 200 ms. Run: go test -run '^$' -bench BenchmarkConsolePages -benchtime 20x ./services/e2e/
func BenchmarkConsolePages(b *testing.B) {
	s := e2e.Start(b, e2e.Options{})
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/api/v1/subscriptions/import", portfolio(100_000))
	req.Header.Set("Authorization", "Bearer "+s.Token(b))
	req.Header.Set("Content-Type", "text/csv")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("import: %d %s", resp.StatusCode, body)
	}
	b.Logf("imported 100,000 subscriptions in %v", time.Since(start))
	if r := s.CLI(b, "run", "--wait", "--timeout", "10m"); r.Code != 0 {
		b.Fatalf("run: %d %s%s", r.Code, r.Stdout, r.Stderr)
	}
	u, resp := signIn(b, s, url.Values{"token": {s.Token(b)}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign in: %d", resp.StatusCode)
	}
	// A filter not seen before reads the whole window (the Lister's cost,
	// as /api/v1/calllist pays it); the same list again, or its next
	// page, comes from the console's snapshot.
	b.Run("calllist-new-filter", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if resp, body := u.get(b, "/calllist?min_days=-"+strconv.Itoa(i)); resp.StatusCode != http.StatusOK {
				b.Fatalf("%d %.300s", resp.StatusCode, body)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
	})
	for _, p := range []struct{ name, path string }{
		{"overview", "/"},
		{"calllist", "/calllist"},
		{"subscriptions", "/subscriptions"},
		{"search", "/subscriptions?q=Customer+99999"},
		{"subscription", "/subscriptions/110000050000"},
		{"notices", "/notices"},
		{"import", "/import"},
		{"templates", "/templates?subscription_id=110000050000"},
		{"report", "/report"},
	} {
		b.Run(p.name, func(b *testing.B) {
			first := time.Now()
			u.get(b, p.path) // the first view after a change reads the store
			b.Logf("%s: first view %v", p.path, time.Since(first))
			for b.Loop() {
				if resp, body := u.get(b, p.path); resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d %.300s", p.path, resp.StatusCode, body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/page")
		})
	}
}
