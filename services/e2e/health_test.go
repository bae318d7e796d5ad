package e2e_test

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"renewals/pkg/testenv"
	"renewals/services/cli"
	"renewals/services/e2e"
)

// health runs `renewals health args...` with only the given environment.
func health(env map[string]string, args ...string) e2e.Result {
	var stdout, stderr bytes.Buffer
	code := cli.Main(context.Background(), append([]string{"health"}, args...), cli.Env{
		Getenv: func(k string) string { return env[k] },
		Stdin:  strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
	})
	return e2e.Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}

// oneSentence checks a failed health check: exit 2, nothing on stdout, one
// line on stderr that says want.
func oneSentence(t *testing.T, what string, r e2e.Result, want string) {
	t.Helper()
	if r.Code != 2 || r.Stdout != "" || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || !strings.Contains(r.Stderr, want) {
		t.Errorf("health, %s: exit %d, stdout %q, stderr %q; want exit 2 and one line saying %q", what, r.Code, r.Stdout, r.Stderr, want)
	}
}

// TestHealth: `renewals health` exits 0 while the server answers /readyz,
// 2 with one sentence while its NATS server is down, and again 0 once NATS
// is back; 2 for a closed port, a port that does not speak HTTP and one
// that never answers.
// Without --server it finds a server of the same environment from
// RENEWALS_HTTP_ADDR, as in a container.
func TestHealth(t *testing.T) {
	dir := t.TempDir()
	ns := testenv.NATSAt(t, dir, -1)
	natsAddr := ns.Addr().(*net.TCPAddr)
	s := e2e.Start(t, e2e.Options{
		Env:  map[string]string{"RENEWALS_NATS_URL": ns.ClientURL()},
		Args: []string{"--target", "api"},
	})
	hostPort := strings.TrimPrefix(s.URL, "http://")
	_, port, _ := strings.Cut(hostPort, ":")

	for what, env := range map[string]map[string]string{
		"RENEWALS_SERVER":            {"RENEWALS_SERVER": s.URL},
		"RENEWALS_HTTP_ADDR":         {"RENEWALS_HTTP_ADDR": hostPort},
		"RENEWALS_HTTP_ADDR 0.0.0.0": {"RENEWALS_HTTP_ADDR": "0.0.0.0:" + port},
	} {
		if r := health(env); r.Code != 0 || r.Stdout != "ready: "+s.URL+"\n" || r.Stderr != "" {
			t.Errorf("health with %s: exit %d, stdout %q, stderr %q; want 0 and ready", what, r.Code, r.Stdout, r.Stderr)
		}
	}
	if r := health(nil, "--server", s.URL+"/"); r.Code != 0 {
		t.Errorf("health --server %s/: exit %d, %s", s.URL, r.Code, r.Stderr)
	}
	if r := health(nil, "--help"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "Usage: renewals health") || !strings.Contains(r.Stdout, "-server") {
		t.Errorf("health --help: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	closed := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	oneSentence(t, "closed port", health(nil, "--server", closed), "cannot reach the server at "+closed)
	oneSentence(t, "NATS port", health(nil, "--server", "http://"+natsAddr.String()), "gave no HTTP answer to /readyz: is --server pointing at renewals?")
	// A port that takes the connection and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	oneSentence(t, "silent port", health(nil, "--server", "http://"+silent.Addr().String(), "--timeout", "200ms"), "did not answer /readyz within 200ms")
	oneSentence(t, "not a URL", health(nil, "--server", "127.0.0.1:8080"), "is not the URL of a server")
	oneSentence(t, "an argument", health(nil, "now"), "see 'renewals health --help'")

	// NATS down: not ready, and the reason.
	ns.Shutdown()
	ns.WaitForShutdown()
	var r e2e.Result
	testenv.Eventually(t, 10*time.Second, "health to fail while NATS is down", func() bool {
		r = health(nil, "--server", s.URL)
		return r.Code != 0
	})
	oneSentence(t, "NATS down", r, "the server at "+s.URL+" is not ready: ")

	// NATS back: ready again.
	testenv.NATSAt(t, dir, natsAddr.Port)
	testenv.Eventually(t, 30*time.Second, "health to pass once NATS is back", func() bool {
		return health(nil, "--server", s.URL).Code == 0
	})
}
