package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

const testToken = "s3cret-token"

// serveTest runs handler behind the API's token check, body guard and
// time-outs t on a real loopback server, and returns its address.
func serveTest(t *testing.T, to Timeouts, handler http.Handler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/api/", requireToken(testToken, to, handler))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	s := &Server{Timeouts: to, Log: zap.NewNop()}
	hs := s.HTTPServer()
	hs.Handler = guardBody(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func get(t *testing.T, addr string, auth ...string) (int, Error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/api/v1/x", nil)
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e Error
	if resp.StatusCode != http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("status %d: the body is not a JSON error: %v", resp.StatusCode, err)
		}
	}
	return resp.StatusCode, e
}

func TestBearerToken(t *testing.T) {
	addr := serveTest(t, DefaultTimeouts(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, c := range []struct {
		auth []string
		want int
		code string
	}{
		{[]string{"Bearer " + testToken}, 200, ""},
		{[]string{"bearer " + testToken}, 200, ""},
		{[]string{"BEARER " + testToken}, 200, ""},
		{[]string{"bEaReR   " + testToken}, 200, ""},
		{nil, 401, CodeUnauthorized},
		{[]string{"Bearer wrong"}, 401, CodeUnauthorized},
		{[]string{"Bearer " + testToken + "x"}, 401, CodeUnauthorized},
		{[]string{"Basic " + testToken}, 401, CodeUnauthorized},
		{[]string{testToken}, 401, CodeUnauthorized},
		{[]string{"Bearer"}, 401, CodeUnauthorized},
		{[]string{"Bearer " + testToken, "Bearer " + testToken}, 400, CodeInvalid},
		{[]string{"Bearer " + testToken, "Bearer wrong"}, 400, CodeInvalid},
		{[]string{"Bearer wrong", "Bearer " + testToken}, 400, CodeInvalid},
	} {
		code, e := get(t, addr, c.auth...)
		if code != c.want || e.Code != c.code {
			t.Errorf("Authorization %q: %d %+v, want %d %q", c.auth, code, e, c.want, c.code)
		}
	}
}

// rawRequest writes req on a fresh connection and returns what the server
// answered until it closed the connection or within wait, and whether it
// closed it.
func rawRequest(t *testing.T, addr, req string, wait time.Duration) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	return string(b), err == nil
}

// TestUnauthenticatedBodyIsNotRead: a body that trickles in, on an API
// route without the token or on a route that reads no body, is answered
// and the connection closed at once, well before the read time-out.
func TestUnauthenticatedBodyIsNotRead(t *testing.T) {
	var reached atomic.Bool
	addr := serveTest(t, DefaultTimeouts(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Store(true) }))
	for _, c := range []struct{ name, req, status string }{
		{"import without a token", "POST /api/v1/subscriptions/import HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nsubscription_id,", "HTTP/1.1 401"},
		{"import with a wrong token", "POST /api/v1/subscriptions/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer no\r\nContent-Length: 10000000\r\n\r\nsub", "HTTP/1.1 401"},
		{"chunked import without a token", "POST /api/v1/subscriptions/import HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nsubscription_id,", "HTTP/1.1 401"},
		{"two Authorization headers", "POST /api/v1/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testToken + "\r\nAuthorization: Bearer " + testToken + "\r\nContent-Length: 1000\r\n\r\n{", "HTTP/1.1 400"},
		{"a body to a route that reads none", "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{", "HTTP/1.1 200"},
	} {
		start := time.Now()
		got, closed := rawRequest(t, addr, c.req, 5*time.Second)
		if !strings.HasPrefix(got, c.status) || !closed {
			t.Errorf("%s: answered %q, closed %v after %v: want %s and the connection closed", c.name, firstLine(got), closed, time.Since(start), c.status)
		}
		if !strings.Contains(got, "Connection: close") {
			t.Errorf("%s: the answer does not say Connection: close:\n%s", c.name, got)
		}
	}
	if reached.Load() {
		t.Error("a request without the token reached the handler")
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

// short are time-outs short enough for a test to outlast them.
var short = Timeouts{Header: 2 * time.Second, Read: 300 * time.Millisecond, Write: 300 * time.Millisecond, Idle: 2 * time.Second}

// TestLongAnswersOutlastTheTimeouts: once the token is checked, an answer
// that keeps writing (the event stream), a handler that works long after
// reading its body (`run --wait`) and a body that keeps coming (a large
// import) each run for several times the read and write time-outs.
func TestLongAnswersOutlastTheTimeouts(t *testing.T) {
	const span = 1500 * time.Millisecond // five time-outs
	addr := serveTest(t, short, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/stream": // a write every 100 ms
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for end := time.Now().Add(span); time.Now().Before(end); <-tick.C {
				if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, "done\n")
		case "/api/wait": // reads its body, then works in silence
			b, _ := io.ReadAll(r.Body)
			select {
			case <-time.After(span):
				fmt.Fprintf(w, "done %s\n", b)
			case <-r.Context().Done():
			}
		case "/api/upload": // a body that trickles
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "done %d\n", n)
		}
	}))
	do := func(method, path string, body io.Reader) string {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+path, body)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: the answer was cut: %v (after %q)", method, path, err, b)
		}
		return string(b)
	}
	if got := do(http.MethodGet, "/api/stream", nil); !strings.HasSuffix(got, "done\n") {
		t.Errorf("the stream was cut: %q", got)
	}
	if got := do(http.MethodPost, "/api/wait", strings.NewReader(`{"wait":true}`)); got != "done {\"wait\":true}\n" {
		t.Errorf("the long handler answered %q", got)
	}
	pr, pw := io.Pipe()
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(span); time.Now().Before(end); <-tick.C {
			pw.Write([]byte("row\n"))
		}
		pw.Close()
	}()
	if got := do(http.MethodPost, "/api/upload", pr); !strings.HasPrefix(got, "done ") || got == "done 0\n" {
		t.Errorf("the trickling upload answered %q", got)
	}
}

// TestSilentClientsAreCut: a client that stops sending its body, or stops
// reading the answer, for longer than the time-out loses the connection.
func TestSilentClientsAreCut(t *testing.T) {
	readErr, writeErr := make(chan error, 1), make(chan error, 1)
	addr := serveTest(t, short, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/upload":
			_, err := io.Copy(io.Discard, r.Body)
			readErr <- err
		case "/api/download":
			chunk := []byte(strings.Repeat("x", 64<<10))
			for range 4096 { // 256 MiB: more than any socket buffer
				if _, err := w.Write(chunk); err != nil {
					writeErr <- err
					return
				}
			}
			writeErr <- nil
		}
	}))
	auth := "Authorization: Bearer " + testToken + "\r\n"

	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	io.WriteString(stalled, "POST /api/upload HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 1000\r\n\r\nrow\n")
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("a body that stopped coming was read to its end")
		}
	case <-time.After(5 * time.Second):
		t.Error("a body that stopped coming still held its handler after 5s")
	}

	deaf, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	io.WriteString(deaf, "GET /api/download HTTP/1.1\r\nHost: x\r\n"+auth+"\r\n")
	bufio.NewReader(deaf).Peek(1) // it reads the first byte, then nothing more
	select {
	case err := <-writeErr:
		if err == nil {
			t.Error("256 MiB were written to a client that read one byte")
		}
	case <-time.After(5 * time.Second):
		t.Error("a client that stopped reading still held its handler after 5s")
	}
}

func TestHeavyReadsAreBounded(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	gate := newReadGate(1) // one running, one waiting
	srv := &http.Server{Handler: gate.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
	}))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/"

	codes := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Get(url)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	<-started // one runs; wait until the other is admitted and waiting
	deadline := time.Now().Add(5 * time.Second)
	for len(gate.admit) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the second read was not admitted to wait")
		}
		time.Sleep(5 * time.Millisecond) // poll with a deadline: admission has no signal
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	var e Error
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || e.Code != CodeTooMany {
		t.Errorf("a third read: %d, Retry-After %q, %+v: want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), e)
	}
	close(release)
	for range 2 {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("an admitted read answered %d", code)
		}
	}
}
