// Package testenv starts real servers for tests: an embedded nats-server with
// JetStream and a throwaway redis-server, each on a free port, each stopped by
// t.Cleanup. Tests never talk to servers started outside the test.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// NATS starts an embedded nats-server with JetStream on a free loopback port,
// storing under a fresh temporary directory, and returns it.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return NATSAt(t, t.TempDir(), -1)
}

// NATSAt starts an embedded nats-server with JetStream storing in dir, on
// port (-1 for a free one). Restarting a server on the same dir and port
// (after Shutdown) simulates a broker restart.
func NATSAt(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Connect opens a NATS connection and a JetStream handle on it to the server
// at url, both closed at test end.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to NATS at %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("open JetStream: %v", err)
	}
	return nc, js
}

// Redis is a throwaway redis-server owned by one test.
type Redis struct {
	Addr string
	URL  string
	cmd  *exec.Cmd
	dir  string
	port int
}

// StartRedis starts redis-server on a free loopback port with no persistence
// and returns it once it answers PING. It fails the test when redis-server is
// not installed (.ci/run installs it).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed: apt-get install -y redis-server")
	}
	r := &Redis{dir: t.TempDir(), port: FreePort(t)}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	r.URL = "redis://" + r.Addr + "/0"
	r.start(t, path)
	t.Cleanup(r.stop)
	return r
}

func (r *Redis) start(t testing.TB, path string) {
	t.Helper()
	r.cmd = exec.Command(path, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s not ready within 10s: %v", r.Addr, err)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline: the server gives no signal
	}
}

func (r *Redis) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// Stop kills redis-server, as an outage would.
func (r *Redis) Stop() { r.stop() }

// Restart kills redis-server and starts it again on the same port and data
// directory. With append-only persistence on, what was written survives.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.stop()
	path, _ := exec.LookPath("redis-server")
	r.start(t, path)
}

// Pid is the redis-server's process id, for benchmarks that account for its
// CPU time.
func (r *Redis) Pid() int { return r.cmd.Process.Pid }

// Client returns a go-redis client for the server, closed at test end.
func (r *Redis) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other caller in this process was given. It draws from 20000-32767,
// below Linux's ephemeral range, so that the many client sockets a test
// opens cannot take the port between this check and the server's bind.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12768)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return p
	}
	t.Fatal("no free TCP port found on 127.0.0.1 in 20000-32767")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// Eventually polls cond every 10ms until it returns true, failing the test
// after timeout. Use it where no signal exists to wait on.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ProcessCPU is the user and system CPU time process pid has used, from
// /proc/<pid>/stat; 0 when it cannot be read.
func ProcessCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields from
	// the last ')'. utime and stime are fields 14 and 15, in clock ticks.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// SelfCPU is the user and system CPU time this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// SMTPSink runs Postfix's smtp-sink with the options opts on a free loopback
// port, stopped at test end, and returns its address and process id. It
// skips the test or benchmark when smtp-sink is not installed (make bench
// installs Postfix).
func SMTPSink(t testing.TB, opts ...string) (addr string, pid int) {
	t.Helper()
	path, err := exec.LookPath("smtp-sink")
	if err != nil {
		if path, err = exec.LookPath("/usr/sbin/smtp-sink"); err != nil {
			t.Skip("smtp-sink is not installed: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix (then postfix stop)")
		}
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	args := opts
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // smtp-sink refuses to run as root
	}
	cmd := exec.Command(path, append(args, addr, "1000")...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start smtp-sink: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	Eventually(t, 10*time.Second, "smtp-sink to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	return addr, cmd.Process.Pid
}

// Mutate returns a copy of b with one random change: a byte replaced or
// flipped, a byte deleted, one of tokens inserted, or a stretch repeated.
// Decoder tests feed it valid input to reach the inputs near it.
func Mutate(r *rand.Rand, b []byte, tokens []string) []byte {
	b = bytes.Clone(b)
	if len(b) == 0 {
		return []byte{byte(r.IntN(256))}
	}
	i := r.IntN(len(b))
	switch r.IntN(5) {
	case 0:
		b[i] = byte(r.IntN(256))
	case 1:
		b[i] ^= 1 << r.IntN(8)
	case 2:
		b = append(b[:i], b[i+1:]...)
	case 3:
		b = append(b[:i], append([]byte(tokens[r.IntN(len(tokens))]), b[i:]...)...)
	default: // repeat a stretch, e.g. a member
		j := i + r.IntN(len(b)-i)
		b = append(b[:j], append(bytes.Clone(b[i:j]), b[j:]...)...)
	}
	return b
}
