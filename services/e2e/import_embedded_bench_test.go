package e2e_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"renewals/pkg/importer"
	"renewals/pkg/kvstore"
	"renewals/pkg/natsbus"
	"renewals/services/cli"
)

// embeddedChildEnv names the data dir that TestImportBenchChildEmbedded
// imports into: the embedded NATS server and the key-value store in one
// process, as `renewals serve` runs them, with JetStream syncing every write
// (the default).
const (
	embeddedChildEnv = "RENEWALS_BENCH_IMPORT_EMBEDDED"
	embeddedHeapEnv  = "RENEWALS_BENCH_IMPORT_HEAPPROFILE" // a file for the child's heap profile after the import, when set
	// reimportProfEnv names a file for the child's CPU profile of the
	// re-import alone, when set.
	reimportProfEnv = "RENEWALS_BENCH_REIMPORT_CPUPROFILE"
)

type embeddedResult struct {
	First, Again importer.Report
	Seconds      float64 // the first import
	AgainSeconds float64 // the same rows again, all unchanged
	AgainCPU     float64 // the process's CPU seconds (user and system) in the re-import
	FirstPeakMB  float64 // VmHWM after the first import
}

// TestImportBenchChildEmbedded is the child half of BenchmarkImport1M's
// embedded run; it does nothing unless the benchmark started it.
func TestImportBenchChildEmbedded(t *testing.T) {
	dir := os.Getenv(embeddedChildEnv)
	if dir == "" {
		t.Skip("runs only as the child process of BenchmarkImport1M")
	}
	n, err := strconv.Atoi(os.Getenv(childRowsEnv))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cli.EmbeddedMemoryLimit) // as serve does
	}
	ctx := context.Background()
	bus, err := natsbus.Open(ctx, natsbus.Config{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	s, _, err := kvstore.New(ctx, bus.JS)
	if err != nil {
		t.Fatal(err)
	}
	defer profileBenchChild(t)()
	var res embeddedResult
	start := time.Now()
	res.First, err = importer.Import(ctx, generate(n), importer.Options{Store: s, Format: importer.FormatCSV, MaxListed: 10})
	if err != nil {
		t.Fatal(err)
	}
	res.Seconds = time.Since(start).Seconds()
	res.FirstPeakMB = vmHWM(t)
	if p := os.Getenv(embeddedHeapEnv); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	stop := profileTo(t, reimportProfEnv)
	cpu0 := selfCPU(t)
	start = time.Now()
	res.Again, err = importer.Import(ctx, generate(n), importer.Options{Store: s, Format: importer.FormatCSV, MaxListed: 10})
	if err != nil {
		t.Fatal(err)
	}
	res.AgainSeconds = time.Since(start).Seconds()
	res.AgainCPU = selfCPU(t) - cpu0
	stop()
	printBenchResult(t, res)
}

// selfCPU is this process's CPU time so far, user and system, in seconds.
func selfCPU(t *testing.T) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// vmHWM is this process's peak RSS so far, in MB.
func vmHWM(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// importEmbedded runs the embedded import child on a fresh data dir and
// reports its figures on b: rows/s of the first import and of the
// re-import, the process's peak RSS (embedded server included) and the
// data dir's size.
func importEmbedded(b *testing.B, rows int) {
	dir := b.TempDir()
	var res embeddedResult
	ru := runBenchChild(b, "TestImportBenchChildEmbedded", []string{embeddedChildEnv + "=" + dir, childRowsEnv + "=" + strconv.Itoa(rows)}, &res)
	if res.First.Created != rows || res.Again.Unchanged != rows {
		b.Fatalf("embedded import child reported %+v then %+v, want %d rows created then unchanged", res.First, res.Again, rows)
	}
	var size int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			size += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rows)/res.Seconds, "rows/s")
	b.ReportMetric(float64(rows)/res.AgainSeconds, "reimport-rows/s")
	b.ReportMetric(res.FirstPeakMB, "import-peak-RSS-MB")
	b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MB")
	b.ReportMetric(float64(size)/(1<<20), "data-dir-MB")
	b.ReportMetric(cpuMicros(ru)/float64(2*rows), "cpu-µs/row")
	// The re-import's CPU (embedded server included) tells what a change
	// did to it on a shared machine better than its rate does.
	b.ReportMetric(res.AgainCPU*1e6/float64(rows), "reimport-cpu-µs/row")
	// The rest of the child's CPU: the first import, and the start of the
	// child and its server and the generating of the rows.
	b.ReportMetric((cpuMicros(ru)-res.AgainCPU*1e6)/float64(rows), "import-cpu-µs/row")
	b.ReportMetric(0, "ns/op")
}
