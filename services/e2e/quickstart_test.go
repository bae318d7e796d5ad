package e2e_test

import (
	"bufio"
	"bytes"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// TestQuickStart runs the README's quick start word for word: the server as
// `make run` starts it (its recipe, read from `make -n run`), then every
// command of the quick start in a directory laid out like the repository.
// Only the HTTP port differs, passed through RENEWALS_HTTP_ADDR and
// RENEWALS_SERVER so that the test takes no fixed port. The emails show the
// sample reseller's name and contacts.
func TestQuickStart(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	commands := quickStartCommands(t, string(readme))

	out, err := exec.Command("make", "--no-print-directory", "-s", "-n", "-C", repo, "run").Output()
	if err != nil {
		t.Fatalf("make -n run: %v", err)
	}
	recipe := strings.TrimSpace(string(out))
	recipe = recipe[strings.LastIndex(recipe, "go build"):]
	_, serveLine, _ := strings.Cut(recipe, "\n") // what follows the build

	dir := t.TempDir()
	for _, p := range []string{"bin", "deploy/sample"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(e2e.Binary(t), filepath.Join(dir, "bin", "renewals")); err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile(samplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deploy/sample/subscriptions.csv"), sample, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env := append(os.Environ(), "RENEWALS_HTTP_ADDR="+addr, "RENEWALS_SERVER=http://"+addr, "RENEWALS_NATS_LISTEN=127.0.0.1:-1")
	srv := exec.Command("sh", "-c", serveLine)
	srv.Dir, srv.Env = dir, env
	// The shell starts the server as its child: a group of their own lets
	// the test stop both.
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var logs bytes.Buffer
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("make run's server:\n%s", logs.String())
		}
	})
	testenv.Eventually(t, 30*time.Second, "the server of make run answers /readyz", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	for _, c := range commands {
		cmd := exec.Command("sh", "-c", c)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", c, err, out)
		}
	}

	entries, err := os.ReadDir(filepath.Join(dir, "data", "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	emails := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".eml") {
			continue
		}
		emails++
		raw, err := os.ReadFile(filepath.Join(dir, "data", "outbox", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if from, err := mail.ParseAddress(m.Header.Get("From")); err != nil || from.Name != "Sample Reseller Ltd (sample)" {
			t.Errorf("%s: From %q, want the sample reseller's name", e.Name(), m.Header.Get("From"))
		}
		for _, want := range []string{"Sample Reseller Ltd (sample)", "01234 567890 (sample)", "renewals@reseller.example"} {
			if !bytes.Contains(raw, []byte(want)) {
				t.Errorf("%s does not show %q", e.Name(), want)
			}
		}
	}
	if emails != len(sampleSent) {
		t.Errorf("%d emails in the outbox after the quick start, want %d", emails, len(sampleSent))
	}
}

// quickStartCommands returns the commands of the README's quick start: the
// lines of the second code block under "## Quick start", comments cut off.
func quickStartCommands(t *testing.T, readme string) []string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no Quick start section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks [][]string
	var cur []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "```"):
			if in {
				blocks = append(blocks, cur)
				cur = nil
			}
			in = !in
		case in && strings.TrimSpace(l) != "":
			cmd, _, _ := strings.Cut(l, " #")
			cur = append(cur, strings.TrimSpace(cmd))
		}
	}
	if len(blocks) < 2 || len(blocks[0]) != 1 || blocks[0][0] != "make run" {
		t.Fatalf("the quick start should be a `make run` block and a block of commands; found %q", blocks)
	}
	return blocks[1]
}
