package natsbus_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"renewals/pkg/natsbus"
	"renewals/pkg/testenv"
)

// TestRefusesServerOlderThan2_10: Debian's nats-server 2.9 (what many
// machines run) is refused at start in one sentence naming both versions,
// instead of failing later on the call list's consumer.
func TestRefusesServerOlderThan2_10(t *testing.T) {
	path, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatal("nats-server (Debian's package, 2.9) is not installed: apt-get install nats-server")
	}
	out, _ := exec.Command(path, "--version").Output()
	if !strings.Contains(string(out), "v2.9.") {
		t.Fatalf("%s is %s; this test needs a 2.9 server", path, strings.TrimSpace(string(out)))
	}
	port := testenv.FreePort(t)
	cmd := exec.Command(path, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testenv.Eventually(t, 10*time.Second, "nats-server 2.9 listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := natsbus.Open(ctx, natsbus.Config{URL: "nats://user:secret@" + addr})
	if err == nil {
		b.Close()
		t.Fatal("Open accepted a 2.9 server")
	}
	msg := err.Error()
	if !strings.Contains(msg, "is version 2.9.") || !strings.Contains(msg, "renewals needs 2.10 or newer") {
		t.Errorf("error %q does not name the server's version and the one needed", msg)
	}
	if strings.Contains(msg, "secret") {
		t.Errorf("error %q shows the password of the URL", msg)
	}
}
