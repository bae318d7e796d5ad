package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"renewals/pkg/mailer"
	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
)

// faultAsOf is the simulated today of the fault tests' passes; every
// subscription ends 30 days later, so each has one 30-day notice due.
const faultAsOf = "2030-01-01"

// faultRig is NATS, Redis and SMTP owned by the test, an in-process API
// server on them, and notifier processes started from the built binary.
type faultRig struct {
	natsURL string
	redis   *testenv.Redis
	smtp    *testenv.SMTPServer
	api     *e2e.Server
	ledger  *redisstore.Ledger
}

func newFaultRig(t *testing.T, natsURL string) *faultRig {
	t.Helper()
	if natsURL == "" {
		natsURL = testenv.NATS(t).ClientURL()
	}
	r := &faultRig{natsURL: natsURL, redis: testenv.StartRedis(t), smtp: testenv.SMTP(t)}
	_, r.ledger = redisstore.New(r.redis.Client(t))
	r.api = e2e.Start(t, e2e.Options{
		Env:  map[string]string{"RENEWALS_NATS_URL": natsURL, "RENEWALS_REDIS_URL": r.redis.URL},
		Args: []string{"--target", "api"},
	})
	return r
}

// importSubs imports n active subscriptions, each with its own contract
// manager, and returns their due notice keys.
func (r *faultRig) importSubs(t *testing.T, n int) []subscription.NoticeKey {
	t.Helper()
	end := subscription.MustDate(faultAsOf).AddDays(30)
	var b strings.Builder
	b.WriteString("subscription_id,end_date,cm_name,cm_email,cm_phone,product\n")
	keys := make([]subscription.NoticeKey, n)
	for i := range n {
		id := fmt.Sprintf("2200%08d", i+1)
		fmt.Fprintf(&b, "%s,%s,Manager %d,cm%d@example.com,+44 20 7946 %04d,Design Suite\n", id, end, i+1, i+1, i)
		keys[i] = subscription.NoticeKey{SubscriptionID: id, EndDate: end, Milestone: 30}
	}
	path := filepath.Join(t.TempDir(), "subs.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := r.api.CLI(t, "import", path); res.Code != 0 {
		t.Fatalf("import: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
	return keys
}

// pass runs a scheduler pass for faultAsOf without waiting for outcomes.
func (r *faultRig) pass(t *testing.T) {
	t.Helper()
	if res := r.api.CLI(t, "run", "--as-of", faultAsOf); res.Code != 0 {
		t.Fatalf("run: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}
}

// waitSent polls the ledger until every key is sent.
func (r *faultRig) waitSent(t *testing.T, timeout time.Duration, keys []subscription.NoticeKey) {
	t.Helper()
	testenv.Eventually(t, timeout, fmt.Sprintf("%d notices sent in the ledger", len(keys)), func() bool {
		sent, err := r.ledger.Sent(context.Background(), keys)
		if err != nil {
			return false
		}
		for _, k := range keys {
			if !sent[k] {
				return false
			}
		}
		return true
	})
}

// check compares what the SMTP server received with keys: none missed, none
// extra, none twice unless the ledger marks it ambiguous. It returns the keys
// received more than once.
func (r *faultRig) check(t *testing.T, keys []subscription.NoticeKey) []string {
	t.Helper()
	got := map[string]int{}
	for _, m := range r.smtp.Messages() {
		msg, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		got[msg.Header.Get(mailer.HeaderNotice)]++
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k.String()] = true
		if got[k.String()] == 0 {
			t.Errorf("missed: %s never received", k)
		}
	}
	var dups []string
	for _, k := range slices.Sorted(maps.Keys(got)) {
		switch {
		case !want[k]:
			t.Errorf("unexpected: %s received %d times", k, got[k])
		case got[k] > 1:
			dups = append(dups, k)
			key, _ := subscription.ParseNoticeKey(k)
			if e, err := r.ledger.Get(context.Background(), key); err != nil || !e.Ambiguous {
				t.Errorf("duplicated: %s received %d times, ledger not ambiguous (%+v, %v)", k, got[k], e, err)
			}
		}
	}
	return dups
}

// notifierProc is `renewals serve --target notifier` run from the binary.
type notifierProc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan struct{} // closed and replaced on every stderr line
	done  chan struct{}
}

// startNotifier starts a notifier process on the rig's servers, with a
// one-second ack wait, and stops it (SIGKILL) at test end.
func (r *faultRig) startNotifier(t *testing.T, env map[string]string) *notifierProc {
	t.Helper()
	cmd := exec.Command(e2e.Binary(t), "serve", "--target", "notifier")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"RENEWALS_NATS_URL=" + r.natsURL, "RENEWALS_REDIS_URL=" + r.redis.URL, "RENEWALS_SMTP_URL=" + r.smtp.URL(),
		"RENEWALS_DATA_DIR=" + t.TempDir(), "RENEWALS_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		"RENEWALS_LOG_FORMAT=json", "RENEWALS_ACK_WAIT=1s", "RENEWALS_WORKERS=4",
		"RENEWALS_RESELLER_NAME=" + e2e.SampleReseller, "RENEWALS_RESELLER_PHONE=" + e2e.SamplePhone,
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &notifierProc{cmd: cmd, seen: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.seen)
			p.seen = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("notifier %d stderr:\n%s", cmd.Process.Pid, strings.Join(p.output(), "\n"))
		}
	})
	return p
}

func (p *notifierProc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// waitLine waits for a stderr line holding s.
func (p *notifierProc) waitLine(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if strings.Contains(l, s) {
				p.mu.Unlock()
				return
			}
		}
		seen := p.seen
		p.mu.Unlock()
		select {
		case <-seen:
		case <-p.done:
			t.Fatalf("notifier exited before printing %q:\n%s", s, strings.Join(p.output(), "\n"))
		case <-timer.C:
			t.Fatalf("notifier printed no %q within %v:\n%s", s, timeout, strings.Join(p.output(), "\n"))
		}
	}
}

// kill ends the process with SIGKILL, as a crash would, and reaps it.
func (p *notifierProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	_ = p.cmd.Wait()
}

// TestNotifierKilledAtEachStep: a notifier SIGKILLed after claiming, after
// sending or after confirming leaves nothing missed; only a kill between
// send and confirm can duplicate, and the ledger then says ambiguous.
func TestNotifierKilledAtEachStep(t *testing.T) {
	for _, step := range []string{"after-claim", "after-send", "after-confirm"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			r := newFaultRig(t, "")
			keys := r.importSubs(t, 6)
			// One worker: when it stops at the step no other notice is in
			// flight, so the kill strikes exactly there.
			victim := r.startNotifier(t, map[string]string{"RENEWALS_FAULT_PAUSE": step, "RENEWALS_WORKERS": "1"})
			r.pass(t)
			victim.waitLine(t, "fault-pause "+step, 15*time.Second)
			victim.kill()
			sentBefore := len(r.smtp.Messages())

			r.startNotifier(t, nil)
			r.waitSent(t, 20*time.Second, keys)
			dups := r.check(t, keys)
			flagged := r.flagged(t, keys)
			switch step {
			case "after-claim":
				if sentBefore != 0 {
					t.Errorf("%d messages sent before the kill after claim", sentBefore)
				}
				fallthrough
			case "after-confirm":
				if len(dups) > 0 || flagged > 0 {
					t.Errorf("killed %s: duplicates %v, %d flagged ambiguous; want none: no send was in flight", step, dups, flagged)
				}
			case "after-send":
				if sentBefore != 1 || len(dups) != 1 || flagged != 1 {
					t.Errorf("killed after send: %d sent before the kill, duplicates %v, %d flagged; want the one paused send resent, flagged ambiguous", sentBefore, dups, flagged)
				}
			}
			t.Logf("killed %s: %d received before the kill, %d after; %d flagged ambiguous, %d really sent twice",
				step, sentBefore, len(r.smtp.Messages()), flagged, len(dups))
		})
	}
}

// flagged counts the keys the ledger marks ambiguous.
func (r *faultRig) flagged(t *testing.T, keys []subscription.NoticeKey) int {
	t.Helper()
	n := 0
	for _, k := range keys {
		e, err := r.ledger.Get(context.Background(), k)
		if err != nil {
			t.Fatalf("ledger entry of %s: %v", k, err)
		}
		if e.Ambiguous {
			n++
		}
	}
	return n
}

// TestBrokerAndStoreRestartMidBatch: NATS, then Redis, restarted while a
// batch is being sent: nothing missed, nothing doubled.
func TestBrokerAndStoreRestartMidBatch(t *testing.T) {
	const n = 300
	t.Run("nats", func(t *testing.T) {
		t.Parallel()
		dir, port := t.TempDir(), testenv.FreePort(t)
		ns := testenv.NATSAt(t, dir, port)
		r := newFaultRig(t, ns.ClientURL())
		keys := r.importSubs(t, n)
		r.startNotifier(t, map[string]string{"RENEWALS_WORKERS": "2"})
		r.pass(t)
		r.smtp.WaitFor(20, 20*time.Second)
		ns.Shutdown()
		ns.WaitForShutdown()
		at := len(r.smtp.Messages())
		testenv.NATSAt(t, dir, port)
		r.waitSent(t, 30*time.Second, keys)
		if dups := r.check(t, keys); len(dups) > 0 {
			t.Errorf("duplicates after a NATS restart: %v", dups)
		}
		t.Logf("NATS restarted after %d of %d messages", at, n)
		if at >= n {
			t.Errorf("the restart came after the batch (%d of %d sent): not mid-batch", at, n)
		}
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		r := newFaultRig(t, "")
		keys := r.importSubs(t, n)
		r.startNotifier(t, map[string]string{"RENEWALS_WORKERS": "2"})
		r.pass(t)
		r.smtp.WaitFor(20, 20*time.Second)
		r.redis.Restart(t)
		at := len(r.smtp.Messages())
		r.waitSent(t, 30*time.Second, keys)
		if dups := r.check(t, keys); len(dups) > 0 {
			t.Errorf("duplicates after a Redis restart: %v", dups)
		}
		t.Logf("Redis restarted after %d of %d messages", at, n)
		if at >= n {
			t.Errorf("the restart came after the batch (%d of %d sent): not mid-batch", at, n)
		}
	})
}

// TestNotifierReplicas: two and four notifier processes share the consumer;
// the set received equals the set due, each exactly once.
func TestNotifierReplicas(t *testing.T) {
	for _, replicas := range []int{2, 4} {
		t.Run(strconv.Itoa(replicas), func(t *testing.T) {
			t.Parallel()
			r := newFaultRig(t, "")
			keys := r.importSubs(t, 300)
			for range replicas {
				r.startNotifier(t, nil)
			}
			res := r.api.CLI(t, "run", "--as-of", faultAsOf, "--wait")
			if res.Code != 0 {
				t.Fatalf("run --wait: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
			}
			r.waitSent(t, 10*time.Second, keys)
			if dups := r.check(t, keys); len(dups) > 0 {
				t.Errorf("%d replicas: duplicates %v", replicas, dups)
			}
			if got := len(r.smtp.Messages()); got != len(keys) {
				t.Errorf("%d replicas: %d messages received, want %d", replicas, got, len(keys))
			}
		})
	}
}

// TestSlowRelay: a relay that takes a second over each message, or lets
// through two a second, with hundreds of notices due at once and a short
// ack wait, so that most notices wait for a connection or a rate token far
// longer than the ack wait and the claim's lease. No process dies, so each
// notice goes exactly once and none is flagged ambiguous. There are more
// notices than workers, so a notifier that pulled ahead of its workers
// would hold some in a buffer past their ack wait.
func TestSlowRelay(t *testing.T) {
	cases := []struct {
		name      string
		notices   int
		delay     time.Duration
		query     string // added to the SMTP URL
		notifiers int
	}{
		{"1s-per-message", 300, time.Second, "&workers=16", 1},
		{"rate=2", 200, 0, "&rate=2", 1},
		{"1s-per-message-two-notifiers", 300, time.Second, "&workers=8", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newFaultRig(t, "")
			r.smtp.SetDelay(tc.delay)
			keys := r.importSubs(t, tc.notices)
			for range tc.notifiers {
				r.startNotifier(t, map[string]string{
					"RENEWALS_ACK_WAIT": "2s", "RENEWALS_WORKERS": "64",
					"RENEWALS_SMTP_URL": r.smtp.URL() + tc.query,
				})
			}
			r.pass(t)
			r.waitSent(t, 3*time.Minute, keys)
			if dups := r.check(t, keys); len(dups) > 0 {
				t.Errorf("%d notices sent twice without a crash: %v", len(dups), dups)
			}
			if got := len(r.smtp.Messages()); got != len(keys) {
				t.Errorf("%d messages received, want %d", got, len(keys))
			}
			if flagged := r.flagged(t, keys); flagged > 0 {
				t.Errorf("%d notices flagged ambiguous without a crash", flagged)
			}
			t.Logf("%d notices through a slow relay: received once each, none flagged", len(keys))
		})
	}
}

// TestNotifierKilledMidBatch: a notifier SIGKILLed while dozens of notices
// are in hand, some waiting for a connection, some on the wire. After a
// restart nothing is missed; every notice received twice is flagged
// ambiguous, and the flagged are no more than the sends that had begun
// (MAIL FROM about to go or gone, per the ledger) when the process died.
func TestNotifierKilledMidBatch(t *testing.T) {
	t.Parallel()
	const n, connections = 400, 8
	r := newFaultRig(t, "")
	r.smtp.SetDelay(100 * time.Millisecond)
	keys := r.importSubs(t, n)
	env := map[string]string{
		"RENEWALS_WORKERS": "64", "RENEWALS_SMTP_URL": r.smtp.URL() + "&workers=" + strconv.Itoa(connections),
	}
	victim := r.startNotifier(t, env)
	r.pass(t)
	r.smtp.WaitFor(60, 30*time.Second)
	victim.kill()
	atKill := len(r.smtp.Messages())

	// The sends in flight at the kill: claims whose holder had begun to
	// send and recorded no outcome (the ledger's own field, read raw), and
	// of those, the ones the relay had not received: a send that was
	// received but not yet confirmed is begun too.
	received := map[string]bool{}
	for _, keys := range r.received(t) {
		for _, k := range keys {
			received[k] = true
		}
	}
	rc := r.redis.Client(t)
	begun, onTheWire := 0, 0
	for _, k := range keys {
		f, err := rc.HMGet(context.Background(), redisstore.Prefix+"notice:"+k.String(), "snd", "o").Result()
		if err != nil {
			t.Fatal(err)
		}
		if f[0] == "1" && f[1] == nil {
			begun++
			if !received[k.String()] {
				onTheWire++
			}
		}
	}

	r.startNotifier(t, env)
	r.waitSent(t, 60*time.Second, keys)
	dups := r.check(t, keys) // fails on any duplicate not flagged
	flagged := r.flagged(t, keys)
	t.Logf("killed after %d of %d received: %d sends begun at the kill (%d not received), %d flagged ambiguous, %d really sent twice",
		atKill, n, begun, onTheWire, flagged, len(dups))
	if flagged > begun {
		t.Errorf("%d flagged ambiguous, more than the %d sends in flight at the kill", flagged, begun)
	}
	// Each connection has at most two begun and not received: the message
	// on the wire and the next one, whose Begin ran beside it.
	if onTheWire > 2*connections {
		t.Errorf("%d sends begun and not received at once on %d connections: more than two a connection", onTheWire, connections)
	}
	if atKill >= n {
		t.Errorf("the kill came after the batch (%d of %d): not mid-batch", atKill, n)
	}
}
