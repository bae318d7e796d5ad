package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/api"
)

// loadAsOf is the day the load tests reckon days left from.
const loadAsOf = "2030-01-01"

// seedSubscriptions writes n subscriptions straight into the Redis store,
// in batches, with end dates spread over a year around loadAsOf: about a
// third of them fall in the call list's window. Every tenth has no
// contract manager email.
func seedSubscriptions(t testing.TB, r *testenv.Redis, n int) {
	t.Helper()
	store, _ := redisstore.New(r.Client(t))
	first := subscription.MustDate(loadAsOf).AddDays(-120)
	batch := make([]subscription.Subscription, 0, 1000)
	for i := range n {
		seats, used := 10+i%40, 5+i%10
		s := subscription.Subscription{
			ID: fmt.Sprintf("3100%08d", i), EndDate: first.AddDays(i % 365),
			CustomerAccount: "ACC-" + strconv.Itoa(i), CustomerName: fmt.Sprintf("Customer %d Ltd", i),
			Product: "CAD Suite Professional", Seats: &seats, SeatsAssigned: &used,
			AccessModel: subscription.MultiUser, Status: subscription.StatusActive, ResellerRep: fmt.Sprintf("Rep %d", i%50),
			ContractManager: subscription.Contact{
				Name: fmt.Sprintf("Contract Manager %d", i), Email: fmt.Sprintf("cm%d@customer.example", i),
				Phone: fmt.Sprintf("+44 20 7946 %04d", i%10000),
			},
			PrimaryAdmin: subscription.Contact{Name: fmt.Sprintf("Admin %d", i), Email: fmt.Sprintf("pa%d@customer.example", i)},
		}
		if i%10 == 0 {
			s.ContractManager.Email = ""
		}
		batch = append(batch, s)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := store.Upsert(context.Background(), batch); err != nil {
				t.Fatalf("seed: %v", err)
			}
			batch = batch[:0]
		}
	}
}

// TestCallListMemoryUnderParallelReads: 100 clients reading the call list
// of 100,000 subscriptions at once keep the server under 500 MB. Each gets
// the whole list, or a 429 with Retry-After when more are reading than the
// server lets run and wait; and a client that was refused is served when
// it comes back.
func TestCallListMemoryUnderParallelReads(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: seeds 100,000 subscriptions and reads the call list a hundred times")
	}
	const subs, readers, limit = 100_000, 100, 500 << 20
	redis := testenv.StartRedis(t)
	start := time.Now()
	seedSubscriptions(t, redis, subs)
	t.Logf("seeded %d subscriptions in %v", subs, time.Since(start).Round(time.Millisecond))
	p := startBinary(t, map[string]string{"RENEWALS_REDIS_URL": redis.URL}, "--target", "api,calllist")

	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: readers}}
	type answer struct {
		code       int
		retryAfter string
		entries    int
		err        error
	}
	read := func() answer {
		req, _ := http.NewRequest(http.MethodGet, p.URL+"/api/v1/calllist?as_of="+loadAsOf, nil)
		req.Header.Set("Authorization", "Bearer "+p.Token)
		resp, err := c.Do(req)
		if err != nil {
			return answer{err: err}
		}
		defer resp.Body.Close()
		a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
		var out struct {
			Count   int               `json:"count"`
			Total   int               `json:"total"`
			Entries []json.RawMessage `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			a.err = fmt.Errorf("status %d: decode: %v", resp.StatusCode, err)
			return a
		}
		if a.code == http.StatusOK && (out.Count != len(out.Entries) || out.Total != len(out.Entries)) {
			a.err = fmt.Errorf("count %d, total %d, %d entries", out.Count, out.Total, len(out.Entries))
		}
		a.entries = len(out.Entries)
		return a
	}
	start = time.Now()
	first := read()
	if first.err != nil || first.code != http.StatusOK {
		t.Fatalf("one read: %d %v", first.code, first.err)
	}
	want := first.entries
	t.Logf("one read: %d entries in %v; RSS %d MB", want, time.Since(start).Round(time.Millisecond), procStatus(t, p.pid(), "VmRSS")>>20)
	if want < subs/10 {
		t.Fatalf("the call list has %d entries: the seed should put about a third of %d on it", want, subs)
	}

	resetPeakRSS(t, p.pid())
	start = time.Now()
	answers := make([]answer, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() { answers[i] = read() })
	}
	wg.Wait()
	peak := procStatus(t, p.pid(), "VmHWM")
	served, refused := 0, 0
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("reader %d: %v", i, a.err)
		case a.code == http.StatusOK && a.entries == want:
			served++
		case a.code == http.StatusTooManyRequests && a.retryAfter != "":
			refused++
		default:
			t.Errorf("reader %d: status %d, Retry-After %q, %d entries (want 200 with %d, or 429 with Retry-After)", i, a.code, a.retryAfter, a.entries, want)
		}
	}
	t.Logf("%d parallel reads in %v: %d served, %d refused with 429; peak RSS %d MB", readers, time.Since(start).Round(time.Millisecond), served, refused, peak>>20)
	if served < 2 {
		t.Errorf("only %d of %d parallel readers were served", served, readers)
	}
	if peak > limit {
		t.Errorf("peak RSS %d MB under %d parallel reads: want under %d MB", peak>>20, readers, limit>>20)
	}
	if a := read(); a.err != nil || a.code != http.StatusOK || a.entries != want {
		t.Errorf("a read after the others: %d, %d entries, %v", a.code, a.entries, a.err)
	}
}

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
		msg := fmt.Sprintf("an open-file limit of %d leaves too few descriptors for a flood: raise the hard limit (ulimit -Hn) to 16384 or more", nofile)
		if os.Getenv("CI") != "" {
			t.Fatal(msg) // CI is where every test must run
		}
		t.Skip(msg)
	}
	const clients = 50
	// Every target, with the reseller details a notifier needs to start.
	p := startBinary(t, map[string]string{"RENEWALS_RESELLER_NAME": "Sample Reseller Ltd", "RENEWALS_RESELLER_PHONE": "+44 20 7946 0000"})
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
