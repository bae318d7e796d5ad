package e2e_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/importer"
	"renewals/pkg/redisstore"
	"renewals/pkg/testenv"
)

// The import benchmark runs the import in a child process (this test binary
// again, with childEnv set and -test.run selecting TestImportBenchChild), so
// that the peak RSS it reports is the import's own and not the benchmark
// harness's or redis-server's.
const (
	childEnv     = "RENEWALS_BENCH_IMPORT_REDIS" // the Redis URL the child imports into
	childRowsEnv = "RENEWALS_BENCH_IMPORT_ROWS"
	childProfEnv = "RENEWALS_BENCH_IMPORT_CPUPROFILE" // a file for the child's CPU profile, when set
	resultPrefix = "IMPORT-RESULT "
)

// benchHeader and benchRow make a realistic row of every field, about 330
// bytes, with a distinct subscription id per i.
const benchHeader = "subscription_id,end_date,customer_account,customer_name,product,seats,seats_assigned,access_model,term,start_date,status,cm_name,cm_email,cm_phone,pa_name,pa_email,sa_emails,timezone,locale,reseller_rep\n"

func benchRow(b []byte, i int) []byte {
	// The same row as this Appendf, written with strconv so that the
	// generator, which runs in the importing process, costs it less CPU:
	// "%012d,2027-%02d-%02d,ACC-%d,\"Customer %d, Ltd\",CAD Suite Professional,%d,%d,multi-user,12 months,2026-%02d-01,active,"+
	// "Contract Manager %d,cm%d@customer.example,+44 20 7946 %04d,Primary Admin %d,pa%d@customer.example,sa%d@customer.example;sb%d@customer.example,"+
	// "Europe/London,en-GB,Rep %d\n"
	b = pad(b, 110000000000+i, 12)
	b = append(b, ",2027-"...)
	b = pad(b, i%12+1, 2)
	b = append(b, '-')
	b = pad(b, i%28+1, 2)
	b = append(b, ",ACC-"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ",\"Customer "...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ", Ltd\",CAD Suite Professional,"...)
	b = strconv.AppendInt(b, int64(10+i%90), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(5+i%5), 10)
	b = append(b, ",multi-user,12 months,2026-"...)
	b = pad(b, i%12+1, 2)
	b = append(b, "-01,active,Contract Manager "...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ",cm"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, "@customer.example,+44 20 7946 "...)
	b = pad(b, i%10000, 4)
	b = append(b, ",Primary Admin "...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, ",pa"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, "@customer.example,sa"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, "@customer.example;sb"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, "@customer.example,Europe/London,en-GB,Rep "...)
	b = strconv.AppendInt(b, int64(i%50), 10)
	return append(b, '\n')
}

// pad appends n with leading zeros to at least width digits (n >= 0).
func pad(b []byte, n, width int) []byte {
	for w, x := 1, n; w < width; w++ {
		if x /= 10; x == 0 {
			b = append(b, '0')
		}
	}
	return strconv.AppendInt(b, int64(n), 10)
}

// generate writes a CSV of n rows into an io.Pipe as the importer reads it:
// the file is never in memory.
func generate(n int) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 64<<10)
		w.WriteString(benchHeader)
		var row []byte
		for i := range n {
			row = benchRow(row[:0], i)
			if _, err := w.Write(row); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(w.Flush())
	}()
	return pr
}

type childResult struct {
	Report  importer.Report `json:"report"`
	Seconds float64         `json:"seconds"`
}

// TestImportBenchChild is the child half of BenchmarkImport1M; it does
// nothing unless the benchmark started it.
func TestImportBenchChild(t *testing.T) {
	url := os.Getenv(childEnv)
	if url == "" {
		t.Skip("runs only as the child process of BenchmarkImport1M")
	}
	n, err := strconv.Atoi(os.Getenv(childRowsEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, _, err := redisstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer profileBenchChild(t)()
	start := time.Now()
	rep, err := importer.Import(ctx, generate(n), importer.Options{Store: s, Format: importer.FormatCSV, MaxListed: 10})
	if err != nil {
		t.Fatal(err)
	}
	printBenchResult(t, childResult{Report: rep, Seconds: time.Since(start).Seconds()})
}

// BenchmarkImport1M imports 1,000,000 generated CSV rows into a fresh
// redis-server, once with the production-like appendfsync everysec and once
// with deploy/redis.conf's appendfsync always, and reports rows/s and the
// importing process's peak RSS; then into the embedded default (see
// importEmbedded), and the same rows again, and reports both rates, the
// peak RSS of the process (the embedded server included) and the data
// dir's size. Run it with -benchtime=1x (make bench).
func BenchmarkImport1M(b *testing.B) {
	rows := benchRows(b, 1_000_000)
	for _, fsync := range []string{"everysec", "always"} {
		b.Run("appendfsync="+fsync, func(b *testing.B) {
			var m importMetrics
			for range b.N {
				m = importOnce(b, fsync, rows)
			}
			b.ReportMetric(m.rowsPerSec, "rows/s")
			b.ReportMetric(m.peakMB, "peak-RSS-MB")
			// CPU per row depends far less than rows/s on what else the
			// machine is running, so it shows what a change did on a
			// shared machine.
			b.ReportMetric(m.childCPU, "import-cpu-µs/row")
			b.ReportMetric(m.redisCPU, "redis-cpu-µs/row")
			// The AOF rewrites that Redis forks as the file grows run on
			// the same CPUs as the import.
			b.ReportMetric(m.rewriteCPU, "aof-rewrite-cpu-µs/row")
			b.ReportMetric(0, "ns/op")
		})
	}
	// The embedded default (`make run`): JetStream key-value store in the
	// embedded nats-server, syncing every write.
	b.Run("store=embedded", func(b *testing.B) {
		for range b.N {
			importEmbedded(b, rows)
		}
	})
}

// importMetrics are one import's figures: its rate, the importing
// process's peak RSS, and the CPU time per row of the importing process and
// of redis-server.
type importMetrics struct {
	rowsPerSec, peakMB, childCPU, redisCPU, rewriteCPU float64
}

func importOnce(b *testing.B, fsync string, rows int) importMetrics {
	r := testenv.StartRedis(b) // appendonly yes, appendfsync always
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	if err := c.ConfigSet(context.Background(), "appendfsync", fsync).Err(); err != nil {
		b.Fatal(err)
	}
	redisBefore, rewriteBefore := redisCPUSeconds(b, c)
	var res childResult
	ru := runBenchChild(b, "TestImportBenchChild", []string{childEnv + "=" + r.URL, childRowsEnv + "=" + strconv.Itoa(rows)}, &res)
	if rep := res.Report; rep.Created != rows || rep.Rows != rows {
		b.Fatalf("import child reported %+v, want %d rows created", rep, rows)
	}
	redisAfter, rewriteAfter := redisCPUSeconds(b, c)
	return importMetrics{
		rowsPerSec: float64(rows) / res.Seconds,
		peakMB:     float64(ru.Maxrss) / 1024, // Maxrss is in KiB on Linux
		childCPU:   cpuMicros(ru) / float64(rows),
		redisCPU:   (redisAfter - redisBefore) * 1e6 / float64(rows),
		rewriteCPU: (rewriteAfter - rewriteBefore) * 1e6 / float64(rows),
	}
}

// redisCPUSeconds is the CPU time, user and system, that redis-server has
// used itself and that its finished child processes (AOF rewrites) used,
// from INFO cpu.
func redisCPUSeconds(b *testing.B, c *redis.Client) (self, children float64) {
	txt, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(txt, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("redis INFO cpu: %s: %v", line, err)
			}
			if strings.HasSuffix(k, "_children") {
				children += f
			} else {
				self += f
			}
		}
	}
	return self, children
}
