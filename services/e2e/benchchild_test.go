package e2e_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The import benchmarks measure each import in a child process of the test
// binary, so that its peak RSS and CPU are the import's own. These are the
// two halves of that hand-over.

// runBenchChild runs the test named test of this binary as a child process
// with env added, decodes the JSON line it printed with printBenchResult
// into res, and returns the child's resource usage.
func runBenchChild(b *testing.B, test string, env []string, res any) *syscall.Rusage {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v\n%s\n%s", test, err, stdout.String(), stderr.String())
	}
	found := false
	for line := range bytes.SplitSeq(stdout.Bytes(), []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(resultPrefix)); ok {
			if err := json.Unmarshal(v, res); err != nil {
				b.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		b.Fatalf("%s printed no result\n%s", test, stdout.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		b.Fatalf("%s: no resource usage", test)
	}
	return ru
}

// printBenchResult is the child's half of runBenchChild.
func printBenchResult(t *testing.T, res any) {
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s%s\n", resultPrefix, b)
}

// profileBenchChild writes the child's CPU profile to the file that
// childProfEnv names, when it is set, until the returned func is called.
func profileBenchChild(t *testing.T) (stop func()) { return profileTo(t, childProfEnv) }

// profileTo writes a CPU profile to the file that the variable env names,
// when it is set, until the returned func is called.
func profileTo(t *testing.T, env string) (stop func()) {
	p := os.Getenv(env)
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// benchRows is the rows a benchmark imports: def, or fewer while tuning
// when childRowsEnv is set.
func benchRows(b *testing.B, def int) int {
	v := os.Getenv(childRowsEnv)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		b.Fatalf("%s=%q: want a number of rows", childRowsEnv, v)
	}
	return n
}

// cpuMicros is the user and system CPU time of a resource usage, in µs.
func cpuMicros(ru *syscall.Rusage) float64 {
	return float64(time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Microseconds())
}
