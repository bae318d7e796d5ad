package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// serveOnce runs `renewals serve` from the binary with env and returns its
// exit code and stderr, failing the test if it is still running after limit.
func serveOnce(t *testing.T, limit time.Duration, env ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, e2e.Binary(t), "serve")
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"RENEWALS_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		"RENEWALS_NATS_LISTEN=127.0.0.1:-1", "RENEWALS_LOG_FORMAT=json",
	}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("serve still running after %v:\n%s", limit, stderr.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestSecondServerOnADataDir: a second serve on a data dir in use exits 2
// within 5 s, saying which process holds the dir; it also warns about a
// misspelt variable with the name it probably meant.
func TestSecondServerOnADataDir(t *testing.T) {
	t.Parallel()
	first := e2e.Start(t, e2e.Options{})
	code, stderr := serveOnce(t, 5*time.Second,
		"RENEWALS_DATA_DIR="+first.DataDir, "RENEWALS_WORKRS=8",
		"RENEWALS_RESELLER_NAME=Acme Software Ltd", "RENEWALS_RESELLER_PHONE=01254 301888")
	if code != 2 {
		t.Errorf("second serve exited %d, want 2:\n%s", code, stderr)
	}
	pid := "renewals process " + strconv.Itoa(os.Getpid())
	if !strings.Contains(stderr, "is in use by "+pid) || !strings.Contains(stderr, "RENEWALS_DATA_DIR") {
		t.Errorf("second serve did not name the holder (%s) and what to do:\n%s", pid, stderr)
	}
	if !strings.Contains(stderr, "RENEWALS_WORKRS is not a renewals setting and is ignored: did you mean RENEWALS_WORKERS?") {
		t.Errorf("no warning about RENEWALS_WORKRS:\n%s", stderr)
	}
}

// TestNotifierNeedsTheReseller: without the reseller's name and a contact,
// serve refuses to start the notifier, in one sentence naming the variables.
func TestNotifierNeedsTheReseller(t *testing.T) {
	t.Parallel()
	code, stderr := serveOnce(t, 10*time.Second, "RENEWALS_DATA_DIR="+t.TempDir())
	if code != 2 || !strings.Contains(stderr, "set RENEWALS_RESELLER_NAME and RENEWALS_RESELLER_PHONE, RENEWALS_RESELLER_EMAIL or RENEWALS_RESELLER_WEBSITE") {
		t.Errorf("serve without the reseller: exit %d, want 2 and a sentence naming the variables:\n%s", code, stderr)
	}
}
