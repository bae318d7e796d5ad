package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// slowServer is a server whose notifier sends through a relay that takes
// delay over each message on one connection, with n subscriptions due on
// faultAsOf.
func slowServer(t *testing.T, delay time.Duration, n int) (*e2e.Server, *testenv.SMTPServer) {
	t.Helper()
	relay := testenv.SMTP(t)
	relay.SetDelay(delay)
	s := e2e.Start(t, e2e.Options{Env: map[string]string{
		"RENEWALS_SMTP_URL": relay.URL() + "&workers=1", "RENEWALS_ACK_WAIT": "5s",
	}})
	var b strings.Builder
	b.WriteString("subscription_id,end_date,cm_name,cm_email\n")
	end := faultAsOf[:4] + "-01-31"
	for i := range n {
		fmt.Fprintf(&b, "3300%08d,%s,Manager %d,cm%d@example.com\n", i+1, end, i+1, i+1)
	}
	path := filepath.Join(t.TempDir(), "subs.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := s.CLI(t, "import", path); res.Code != 0 {
		t.Fatalf("import: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
	return s, relay
}

// client runs a client subcommand from the binary against s.
func client(t *testing.T, s *e2e.Server, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(e2e.Binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "RENEWALS_SERVER=" + s.URL, "RENEWALS_API_TOKEN=" + s.Token(t)}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out
}

// TestWaitStopsOnSignal: `run --wait` stops at once on SIGTERM or SIGINT
// while notices are still being sent, and the server carries on.
func TestWaitStopsOnSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			const n = 6
			s, relay := slowServer(t, 500*time.Millisecond, n)
			cmd, out := client(t, s, "run", "--as-of", faultAsOf, "--wait")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			relay.WaitFor(1, 20*time.Second) // sending has begun
			if len(relay.Messages()) >= n {
				t.Fatal("every notice went before the signal: nothing was left to wait for")
			}
			sent := time.Now()
			_ = cmd.Process.Signal(sig)
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("run --wait still running 2s after %v:\n%s", sig, out)
			}
			t.Logf("run --wait stopped %v after %v, exit %d: %s", time.Since(sent).Round(time.Millisecond), sig, cmd.ProcessState.ExitCode(), strings.TrimSpace(out.String()))
			if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(out.String(), "the server carries on") {
				t.Errorf("exit %d, output %q; want 2 and a sentence that the server carries on", code, out)
			}
			relay.WaitFor(n, 30*time.Second) // the server finished the pass
		})
	}
}

// TestWaitTimeout: `run --wait --timeout` returns exit 1 when the time runs
// out, saying how many notices are still open and what they wait for.
func TestWaitTimeout(t *testing.T) {
	t.Parallel()
	s, _ := slowServer(t, time.Minute, 3) // a relay that takes the data and never answers in time
	start := time.Now()
	cmd, out := client(t, s, "run", "--as-of", faultAsOf, "--wait", "--timeout", "2s")
	err := cmd.Run()
	if err == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("run --wait --timeout 2s: %v, exit %d; want exit 1:\n%s", err, cmd.ProcessState.ExitCode(), out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("run --wait --timeout 2s took %v", took)
	}
	// All three are claimed: one on the wire, two waiting for the one connection.
	if !strings.Contains(out.String(), "3 notices still open after 2s: 3 being sent, waiting on the SMTP relay") {
		t.Errorf("output %q does not say what is open", out)
	}
	t.Logf("%s", strings.TrimSpace(out.String()))
}
