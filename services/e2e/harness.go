// Package e2e runs renewals end to end in tests: the real `serve` code in
// process (or the built binary as a subprocess), on free ports, with a
// temporary data dir, against servers the test starts itself.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"renewals/pkg/natsbus"
	"renewals/pkg/testenv"
	"renewals/services/cli"
)

// Options configure a server under test.
type Options struct {
	// Env adds RENEWALS_* variables, e.g. RENEWALS_REDIS_URL.
	Env map[string]string
	// Args are extra `serve` flags, e.g. --target.
	Args []string
	// DataDir reuses a data dir (for restarts); empty makes a fresh one.
	DataDir string
}

// Server is a `renewals serve` running inside the test process.
type Server struct {
	URL     string
	DataDir string
	env     map[string]string
	cancel  context.CancelFunc
	done    chan int
	logs    *syncBuffer
}

// The sample reseller that the servers of the tests write emails as.
const (
	SampleReseller = "Sample Reseller Ltd"
	SamplePhone    = "01234 567890"
)

// Start runs `renewals serve` in process on free ports and returns once it
// answers /readyz. It is shut down (as by SIGTERM) at test end.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	dir := o.DataDir
	if dir == "" {
		dir = t.TempDir()
	}
	env := map[string]string{
		"RENEWALS_DATA_DIR": dir,
		// A test's data dir is thrown away: syncing every write to disk
		// (the default) would only make the suite slower and hostage to
		// other processes' disk writes. TestEmbeddedServerSyncsEveryWrite
		// and BenchmarkEmbeddedDefault cover the default.
		"RENEWALS_NATS_SYNC": "2m",
		// Port 0 (HTTP) and -1 (NATS) let each server pick a free port
		// itself, which no other test can take first; Start reads the
		// addresses back from what serve prints.
		"RENEWALS_HTTP_ADDR":   "127.0.0.1:0",
		"RENEWALS_NATS_LISTEN": "127.0.0.1:-1",
		"RENEWALS_LOG_FORMAT":  "json",
		"RENEWALS_API_TOKEN":   "",
		// The notifier refuses to start without the reseller's name and
		// a contact for the emails.
		"RENEWALS_RESELLER_NAME":  SampleReseller,
		"RENEWALS_RESELLER_PHONE": SamplePhone,
	}
	for k, v := range o.Env {
		env[k] = v
	}
	s := &Server{
		DataDir: dir, env: env,
		done: make(chan int, 1), logs: &syncBuffer{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- cli.Main(ctx, append([]string{"serve"}, o.Args...), cli.Env{
			Getenv: s.getenv, Stdin: strings.NewReader(""), Stdout: s.logs, Stderr: s.logs,
		})
	}()
	t.Cleanup(func() { s.Stop(t) })
	s.waitReady(t)
	if runsScheduler(o) {
		// Every start runs a pass for the real today; wait for it, so that
		// it cannot race with what the test imports next.
		testenv.Eventually(t, 30*time.Second, "the start-up scheduler pass", func() bool {
			return strings.Contains(s.Logs(), `"msg":"scheduler pass`)
		})
	}
	return s
}

// runsScheduler reports whether the server runs the scheduler target.
func runsScheduler(o Options) bool {
	target := o.Env["RENEWALS_TARGET"]
	for i, a := range o.Args {
		if v, ok := strings.CutPrefix(a, "--target="); ok {
			target = v
		} else if a == "--target" && i+1 < len(o.Args) {
			target = o.Args[i+1]
		}
	}
	return target == "" || strings.Contains(target, "all") || strings.Contains(target, "scheduler")
}

func (s *Server) getenv(k string) string { return s.env[k] }

var servingLine = regexp.MustCompile(`renewals: serving \S+ on (http://[0-9.:]+)`)

// NATSURL returns the embedded NATS server's client URL.
func (s *Server) NATSURL(t testing.TB) string {
	t.Helper()
	m := regexp.MustCompile(`"embedded NATS started","listen":"([^"]+)"`).FindStringSubmatch(s.Logs())
	if m == nil {
		t.Fatalf("this server runs no embedded NATS (or it did not say where it listens):\n%s", s.Logs())
	}
	return m[1]
}

// NATSURLAs returns the embedded NATS server's client URL with the password
// of user (natsbus.ServiceUser or natsbus.DashboardUser) in it, read from the
// file the server generated into its data dir.
func (s *Server) NATSURLAs(t testing.TB, user string) string {
	t.Helper()
	file := natsbus.ServicePasswordFile
	if user == natsbus.DashboardUser {
		file = natsbus.DashboardPasswordFile
	}
	pw, err := os.ReadFile(filepath.Join(s.DataDir, file))
	if err != nil {
		t.Fatalf("the embedded NATS password of %s: %v", user, err)
	}
	u, err := url.Parse(s.NATSURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, strings.TrimSpace(string(pw)))
	return u.String()
}

func (s *Server) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.URL == "" {
		if m := servingLine.FindStringSubmatch(s.logs.String()); m != nil {
			s.URL = m[1]
			break
		}
		select {
		case code := <-s.done:
			s.done <- code
			t.Fatalf("renewals serve exited with %d before it was ready:\n%s", code, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewals serve did not start listening within 30s:\n%s", s.logs.String())
		}
		time.Sleep(10 * time.Millisecond) // poll with a deadline: the log is the only signal
	}
	for {
		select {
		case code := <-s.done:
			s.done <- code
			t.Fatalf("renewals serve exited with %d before it was ready:\n%s", code, s.logs.String())
		default:
		}
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewals serve not ready within 30s:\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond) // poll with a deadline: readiness has no push signal
	}
}

// Stop shuts the server down as SIGTERM would and waits for a clean exit.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case code := <-s.done:
		if code != 0 {
			t.Errorf("renewals serve exited with %d on shutdown:\n%s", code, s.logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("renewals serve did not shut down within 30s")
	}
}

// Logs returns everything the server wrote to stdout and stderr so far.
func (s *Server) Logs() string { return s.logs.String() }

// Outbox returns the .eml files in the server's outbox, by name.
func (s *Server) Outbox(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join(s.DataDir, "outbox"))
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.DataDir, "outbox", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// Result is what a client command printed and its exit status.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// CLI runs a client subcommand against the server, as `renewals args...`.
func (s *Server) CLI(t testing.TB, args ...string) Result {
	t.Helper()
	return s.CLIInput(t, "", args...)
}

// CLIInput is CLI with stdin as the command's standard input.
func (s *Server) CLIInput(t testing.TB, stdin string, args ...string) Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), args, cli.Env{
		Getenv: func(k string) string {
			switch k {
			case "RENEWALS_SERVER":
				return s.URL
			case "RENEWALS_DATA_DIR":
				return s.DataDir
			}
			return ""
		},
		Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr,
	})
	return Result{code, stdout.String(), stderr.String()}
}

// Get sends an authenticated GET of path and returns the answer and its
// body, read to the end.
func (s *Server) Get(t testing.TB, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Token returns the API token the server generated.
func (s *Server) Token(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.DataDir, "api-token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// API sends an authenticated request and decodes a JSON answer into out.
func (s *Server) API(t testing.TB, method, path string, body any, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.URL+path, r)
	req.Header.Set("Authorization", "Bearer "+s.Token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// Binary builds the renewals binary once per test binary and returns its
// path, for tests that run the service as a subprocess (to kill it with
// SIGKILL). It is built with the tag faultpause, which adds the one thing
// the binary users run lacks: RENEWALS_FAULT_PAUSE, to stop the notifier
// at a step of the send protocol for the fault tests.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "renewals-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "renewals")
		out, err := exec.Command("go", "build", "-tags", "faultpause", "-o", binPath, "renewals/services/renewals").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Main runs a package's tests and then deletes the binary that Binary
// built, if any, so that test runs leave no binary behind. Call it from the
// package's TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
