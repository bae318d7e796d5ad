package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
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

// TestStartupChecksComeFirst: a taken HTTP port, a taken embedded NATS port
// and a malformed RENEWALS_SMTP_URL each stop the start at once with one
// sentence, before anything else has started and logged errors of its own.
func TestStartupChecksComeFirst(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	reseller := []string{"RENEWALS_RESELLER_NAME=Acme Software Ltd", "RENEWALS_RESELLER_PHONE=01254 301888"}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"http port taken", []string{"RENEWALS_HTTP_ADDR=" + taken.Addr().String()}, "cannot listen on " + taken.Addr().String()},
		{"nats port taken", []string{"RENEWALS_NATS_LISTEN=" + taken.Addr().String()}, "the embedded NATS server cannot listen on " + taken.Addr().String()},
		{"smtp url", []string{`RENEWALS_SMTP_URL=smtp://relay.example:587?tls=bogus`}, "RENEWALS_SMTP_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"RENEWALS_DATA_DIR=" + t.TempDir()}, reseller...)
			start := time.Now()
			code, stderr := serveOnce(t, 5*time.Second, append(env, tc.env...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want 2 and %q:\n%s", code, tc.want, stderr)
			}
			if strings.Contains(stderr, `"level":"error"`) || strings.Contains(stderr, "RENEWALS_SMTP_URL: RENEWALS_SMTP_URL") {
				t.Errorf("start-up logged other errors first, or doubled a prefix:\n%s", stderr)
			}
			t.Logf("%s: stopped in %v: %s", tc.name, time.Since(start).Round(time.Millisecond), lastLine(stderr))
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestRedisOutageLogsAsJSON: while Redis is down, what go-redis has to say
// (failed dials) comes out as the process's own JSON log lines, not as the
// standard logger's bare lines.
func TestRedisOutageLogsAsJSON(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	relay := testenv.SMTP(t)
	srv := startBinary(t, map[string]string{
		"RENEWALS_REDIS_URL": r.URL, "RENEWALS_SMTP_URL": relay.URL(),
		"RENEWALS_RESELLER_NAME": e2e.SampleReseller, "RENEWALS_RESELLER_PHONE": e2e.SamplePhone,
	})
	r.Stop()
	testenv.Eventually(t, 30*time.Second, "go-redis's failed dials in the log", func() bool {
		if resp, err := http.Get(srv.URL + "/readyz"); err == nil {
			resp.Body.Close()
		}
		return strings.Contains(srv.logs(), "failed to dial")
	})
	for _, l := range strings.Split(strings.TrimSpace(srv.logs()), "\n") {
		if strings.HasPrefix(l, "renewals: ") {
			continue // serve's own start-up lines for people
		}
		if !json.Valid([]byte(l)) {
			t.Errorf("a log line that is not JSON: %q", l)
		}
	}
}

// TestClientAtANonHTTPPort: a --server that does not speak HTTP (here the
// embedded NATS port) gets a sentence, not a raw protocol error.
func TestClientAtANonHTTPPort(t *testing.T) {
	t.Parallel()
	s := e2e.Start(t, e2e.Options{})
	u, err := url.Parse(s.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	res := s.CLI(t, "calllist", "--server", "http://"+u.Host)
	if res.Code != 2 || !strings.Contains(res.Stderr, "did not answer in HTTP") || !strings.Contains(res.Stderr, "is --server the address of renewals") {
		t.Errorf("calllist at the NATS port: exit %d, %q; want 2 and a sentence", res.Code, res.Stderr)
	}
}
