package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"renewals/services/e2e"
)

// binServe is `renewals serve` run from the built binary, so that its
// memory and open files are its own and not the test's.
type binServe struct {
	URL, DataDir, Token string
	cmd                 *exec.Cmd
	mu                  sync.Mutex
	out                 bytes.Buffer
	done                chan struct{}
}

var binServingLine = regexp.MustCompile(`renewals: serving \S+ on (http://[0-9.:]+)`)

// startBinary starts the binary with a fresh data dir (or env's
// RENEWALS_DATA_DIR, to start again on one), free ports and env added, waits
// until /readyz answers, and stops it (SIGTERM) at test end.
func startBinary(t *testing.T, env map[string]string, args ...string) *binServe {
	t.Helper()
	return startBinaryAt(t, e2e.Binary(t), env, args...)
}

// startBinaryAt is startBinary with the binary at path bin, e.g. one built
// without the fault-test tag, or an older build.
func startBinaryAt(t testing.TB, bin string, env map[string]string, args ...string) *binServe {
	t.Helper()
	dir := env["RENEWALS_DATA_DIR"]
	if dir == "" {
		dir = t.TempDir()
	}
	p := &binServe{DataDir: dir, Token: "test-token-" + strconv.Itoa(os.Getpid()), done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	p.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"RENEWALS_DATA_DIR=" + p.DataDir, "RENEWALS_HTTP_ADDR=127.0.0.1:0", "RENEWALS_NATS_LISTEN=127.0.0.1:-1",
		"RENEWALS_LOG_FORMAT=json", "RENEWALS_API_TOKEN=" + p.Token,
	}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	go func() {
		defer close(p.done)
		defer func() { _ = p.cmd.Wait() }() // the exit status, once the output has ended
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := binServingLine.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("serve %d output:\n%s", p.cmd.Process.Pid, p.logs())
		}
	})
	select {
	case p.URL = <-urlc:
	case <-p.done:
		t.Fatalf("renewals serve exited before listening:\n%s", p.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("renewals serve did not listen within 30s:\n%s", p.logs())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewals serve not ready within 30s:\n%s", p.logs())
		}
		time.Sleep(20 * time.Millisecond) // poll with a deadline: readiness has no push signal
	}
}

func (p *binServe) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *binServe) pid() int { return p.cmd.Process.Pid }

// request sends an authenticated request with client c and returns the
// status and body.
func (p *binServe) request(ctx context.Context, c *http.Client, method, path, contentType string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.URL+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// procStatus reads one "Name: N kB" field of /proc/PID/status, in bytes.
func procStatus(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %v", pid, field, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// resetPeakRSS starts VmHWM afresh from the current RSS (Linux's
// clear_refs value 5).
func resetPeakRSS(t *testing.T, pid int) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak RSS of %d: %v", pid, err)
	}
}

// openFiles counts the entries of /proc/PID/fd.
func openFiles(t *testing.T, pid int) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
