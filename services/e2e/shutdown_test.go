package e2e_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"renewals/pkg/mailer"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// TestServeShutdown: SIGTERM to serve with sends in flight behind a slow
// relay, an event stream and a `run --wait` connected. The clients are told
// at once, serve exits 0 within its drain time, and after a restart a new
// `run --wait` finds every notice sent exactly once.
func TestServeShutdown(t *testing.T) {
	t.Parallel()
	const n = 12
	relay := testenv.SMTP(t)
	relay.SetDelay(400 * time.Millisecond)
	env := map[string]string{
		"RENEWALS_DATA_DIR": t.TempDir(), "RENEWALS_SMTP_URL": relay.URL() + "&workers=1",
		"RENEWALS_DRAIN": "3s", "RENEWALS_ACK_WAIT": "5s", "RENEWALS_NATS_SYNC": "2m",
		"RENEWALS_RESELLER_NAME": e2e.SampleReseller, "RENEWALS_RESELLER_PHONE": e2e.SamplePhone,
	}
	srv := startBinary(t, env)
	var server string
	cli := func(args ...string) *exec.Cmd {
		c := exec.Command(e2e.Binary(t), args...)
		c.Env = []string{"PATH=" + os.Getenv("PATH"), "RENEWALS_SERVER=" + server, "RENEWALS_API_TOKEN=" + srv.Token}
		return c
	}
	server = srv.URL

	var b strings.Builder
	b.WriteString("subscription_id,end_date,cm_name,cm_email\n")
	keys := map[string]bool{}
	for i := range n {
		id := fmt.Sprintf("4400%08d", i+1)
		fmt.Fprintf(&b, "%s,2030-01-31,Manager %d,cm%d@example.com\n", id, i+1, i+1)
		keys[id+":2030-01-31:30"] = true
	}
	csv := filepath.Join(t.TempDir(), "subs.csv")
	if err := os.WriteFile(csv, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := cli("import", csv).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}

	// An event stream, read line by line until it ends.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+srv.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	streamLines := make(chan string, 1024)
	go func() {
		defer close(streamLines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			streamLines <- sc.Text()
		}
	}()

	wait := cli("run", "--as-of", "2030-01-01", "--wait")
	var waitOut strings.Builder
	wait.Stdout, wait.Stderr = &waitOut, &waitOut
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	waitDone := make(chan struct{})
	go func() { _ = wait.Wait(); close(waitDone) }()

	relay.WaitFor(2, 20*time.Second) // sends are under way
	_ = srv.cmd.Process.Signal(syscall.SIGTERM)
	signalled := time.Now()
	select {
	case <-srv.done:
	case <-time.After(3*time.Second + 5*time.Second):
		t.Fatalf("serve still running %v after SIGTERM (drain 3s)", time.Since(signalled))
	}
	stopped := time.Since(signalled)
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("serve exited %d after SIGTERM, want 0", code)
	}
	select {
	case <-waitDone:
	case <-time.After(5 * time.Second):
		t.Fatal("run --wait got no answer when serve shut down")
	}
	if code := wait.ProcessState.ExitCode(); code != 2 || !strings.Contains(waitOut.String(), "shutting down") {
		t.Errorf("run --wait at shutdown: exit %d, %q; want 2 and a sentence that the server is shutting down", code, waitOut.String())
	}
	sawShutdown := false
	for l := range streamLines {
		if l == "event: shutdown" {
			sawShutdown = true
		}
	}
	if !sawShutdown {
		t.Error("the event stream ended without a shutdown event")
	}
	at := len(relay.Messages())
	if at >= n {
		t.Fatalf("every notice went before the shutdown (%d of %d): nothing was in flight", at, n)
	}

	server = startBinary(t, env).URL // the same data dir and relay
	if out, err := cli("run", "--as-of", "2030-01-01", "--wait", "--timeout", "60s").CombinedOutput(); err != nil {
		t.Fatalf("run --wait after the restart: %v\n%s", err, out)
	}
	got := map[string]int{}
	for _, m := range relay.Messages() {
		msg, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		got[msg.Header.Get(mailer.HeaderNotice)]++
	}
	for k := range keys {
		switch {
		case got[k] == 0:
			t.Errorf("missed: %s never received", k)
		case got[k] > 1:
			out, _ := cli("notices", "--subscription", strings.Split(k, ":")[0], "--json").CombinedOutput()
			if !strings.Contains(string(out), `"ambiguous": true`) && !strings.Contains(string(out), `"ambiguous":true`) {
				t.Errorf("%s received %d times and not flagged ambiguous: %s", k, got[k], out)
			}
		}
	}
	if len(got) != n {
		t.Errorf("received %d distinct notices, want %d", len(got), n)
	}
	t.Logf("SIGTERM after %d of %d sent; serve exited in %v; after the restart all %d received", at, n, stopped.Round(time.Millisecond), len(got))
}
