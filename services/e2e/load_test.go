package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"renewals/services/api"
)

// raiseOwnOpenFiles lifts this test process's soft open-file limit to its
// hard limit and returns it: the client side of a flood needs descriptors
// too.
func raiseOwnOpenFiles(t *testing.T) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	return lim.Cur
}

// dialFrom opens a TCP connection to addr from the loopback address ip,
// so that a test can play many clients.
func dialFrom(ip, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", addr)
}

// TestSlowAndIdleClients: 10,000 unauthenticated connections (idle, with
// headers that never end, or with a body sent a byte at a time), from 50
// client addresses, leave the server answering authenticated calls in
// under a second and taking an import; the slow bodies are answered 401
// and closed at once, connections over the per-client bound are closed at
// once, and the rest are closed by the server's header time-out, after
// which its open files are back at their baseline.
func TestSlowAndIdleClients(t *testing.T) {
	nofile := raiseOwnOpenFiles(t)
	// The server inherits the same hard limit and needs as many again.
	flood := min(10_000, int(nofile)-2_000-api.PerClientConns)
	if flood < 1_000 {
		t.Skipf("an open-file limit of %d leaves too few descriptors for a flood", nofile)
	}
	const clients = 50
	p := startServe(t, nil)
	addr := strings.TrimPrefix(p.URL, "http://")
	c := &http.Client{}
	ctx := context.Background()

	importRows := func(first, n int) {
		t.Helper()
		var b strings.Builder
		b.WriteString("subscription_id,end_date,cm_name,cm_email,product\n")
		for i := first; i < first+n; i++ {
			fmt.Fprintf(&b, "3200%08d,2030-02-01,Manager %d,cm%d@example.com,Design Suite\n", i, i, i)
		}
		code, body, err := p.request(ctx, c, http.MethodPost, "/api/v1/subscriptions/import", "text/csv", strings.NewReader(b.String()))
		if err != nil || code != http.StatusOK {
			t.Fatalf("import: %d %s %v", code, body, err)
		}
		var rep struct {
			Created int `json:"created"`
		}
		if err := json.Unmarshal(body, &rep); err != nil || rep.Created != n {
			t.Fatalf("import report %s: want %d created", body, n)
		}
	}
	var slowest time.Duration
	calls := []string{"/readyz", "/api/v1/subscriptions/320000000001", "/api/v1/calllist?as_of=2030-01-01&limit=10", "/api/v1/notices?subscription_id=320000000001"}
	answerQuickly := func(when string) {
		t.Helper()
		for _, path := range calls {
			start := time.Now()
			code, body, err := p.request(ctx, c, http.MethodGet, path, "", nil)
			took := time.Since(start)
			slowest = max(slowest, took)
			if err != nil || code != http.StatusOK {
				t.Fatalf("%s: GET %s: %d %s %v", when, path, code, body, err)
			}
			if took > time.Second {
				t.Errorf("%s: GET %s took %v: want under 1s", when, path, took)
			}
		}
	}
	// Warm up, so that the files the server opens on first use are open.
	importRows(1, 100)
	answerQuickly("before the flood")
	baseline := openFiles(t, p.pid())

	// The flood: a third idle, a third with headers that never end, a third
	// unauthenticated imports whose body trickles.
	conns := make([]net.Conn, flood)
	kinds := []string{"", "GET /api/v1/calllist HTTP/1.1\r\nHost: renewals\r\n",
		"POST /api/v1/subscriptions/import HTTP/1.1\r\nHost: renewals\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\nsubscription_id,"}
	errs := make([]error, flood)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range flood {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, err := dialFrom(fmt.Sprintf("127.0.1.%d", 1+i%clients), addr)
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = conn
			if k := kinds[i%3]; k != "" {
				_, errs[i] = conn.Write([]byte(k))
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("open the flood: %v", err)
	}
	held := openFiles(t, p.pid())
	t.Logf("%d connections from %d addresses: the server holds %d files (baseline %d)", flood, clients, held, baseline)

	// While they are open the server answers, and takes an import.
	answerQuickly("during the flood")
	start := time.Now()
	importRows(101, 1000)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("an import of 1,000 rows took %v during the flood", took)
	}

	// The trickling bodies were refused before being read, and closed.
	var refused, open int
	var mu sync.Mutex
	by := time.Now().Add(5 * time.Second)
	for i := 2; i < flood; i += 3 {
		wg.Go(func() {
			_ = conns[i].SetReadDeadline(by)
			b, err := io.ReadAll(conns[i])
			mu.Lock()
			defer mu.Unlock()
			if err == nil && strings.HasPrefix(string(b), "HTTP/1.1 401") {
				refused++
			} else {
				open++
			}
		})
	}
	wg.Wait()
	if open > 0 {
		t.Errorf("%d of %d unauthenticated trickling imports were not answered 401 and closed within 5s", open, refused+open)
	}

	// One client over its bound: the connections beyond it are closed at once.
	over := 50
	extra := make([]net.Conn, api.PerClientConns+over)
	for i := range extra {
		conn, err := dialFrom("127.0.2.1", addr)
		if err != nil {
			t.Fatalf("connection %d of one client: %v", i, err)
		}
		extra[i] = conn
		defer conn.Close()
	}
	var closed int
	by = time.Now().Add(2 * time.Second)
	for _, conn := range extra {
		wg.Go(func() {
			_ = conn.SetReadDeadline(by)
			_, err := conn.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				mu.Lock()
				closed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if closed != over {
		t.Errorf("%d of one client's %d connections were closed at once: want the %d over the bound of %d", closed, len(extra), over, api.PerClientConns)
	}
	answerQuickly("with one client at its bound")

	// The server lets go of the rest itself, without the clients closing.
	start = time.Now()
	deadline := start.Add(api.DefaultTimeouts().Header + 20*time.Second)
	for {
		n := openFiles(t, p.pid())
		if n <= baseline {
			t.Logf("open files back to %d (baseline %d) %v after the checks", n, baseline, time.Since(start).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds %d files %v later (baseline %d)", n, time.Since(start).Round(time.Second), baseline)
		}
		time.Sleep(100 * time.Millisecond) // poll with a deadline: nothing signals a closed descriptor
	}
	answerQuickly("after the flood")
	t.Logf("the slowest authenticated call took %v", slowest.Round(time.Millisecond))
}
