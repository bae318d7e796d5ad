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
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/event"
	"renewals/pkg/kvstore"
	"renewals/pkg/mailer"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
	"renewals/services/notifier"
)

// clusterNoticesEnv sets how many notices TestNATSClusterServerLoss sends:
// 20,000 by default (the full size), fewer for a quick look.
const clusterNoticesEnv = "RENEWALS_CLUSTER_NOTICES"

// serveProc is `renewals serve --target <target>` run from the binary.
type serveProc struct {
	target string
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	done   chan struct{}
}

// startServe starts `renewals serve --target target` with env on top of a
// test's defaults, and stops it (SIGKILL) at test end.
func startServe(t *testing.T, target string, env map[string]string) *serveProc {
	t.Helper()
	cmd := exec.Command(e2e.Binary(t), "serve", "--target", target)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"RENEWALS_DATA_DIR=" + t.TempDir(), "RENEWALS_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		"RENEWALS_LOG_FORMAT=json",
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
	p := &serveProc{target: target, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		_ = cmd.Wait()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("%s %d stderr (last lines):\n%s", target, cmd.Process.Pid, strings.Join(p.lines[max(0, len(p.lines)-40):], "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

// TestNATSClusterServerLoss runs the service on three nats-servers clustered
// on loopback, with the RENEWALS stream and every bucket in three replicas
// (RENEWALS_REPLICAS=3, state in the key-value store): an API process, three
// notifier processes and two scheduler processes, all given the three URLs.
// The subscriptions end 30 days after today, so the schedulers' start-up
// passes make a notice due for each. Mid-batch, the server leading the
// RENEWALS stream is stopped and started again, then another server. The
// keys received must equal the due set, each once: a key received twice
// must be flagged ambiguous in the ledger, and is counted.
func TestNATSClusterServerLoss(t *testing.T) {
	n := 20_000
	if v := os.Getenv(clusterNoticesEnv); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("%s=%q: %v", clusterNoticesEnv, v, err)
		}
	}
	ctx := context.Background()
	c := testenv.StartNATSCluster(t, 3)
	smtp := testenv.SMTP(t)
	env := map[string]string{"RENEWALS_NATS_URL": c.URLs(), "RENEWALS_REPLICAS": "3"}
	api := e2e.Start(t, e2e.Options{Env: env, Args: []string{"--target", "api"}})

	end := subscription.DateOf(time.Now().UTC()).AddDays(30)
	keys := make([]subscription.NoticeKey, n)
	var b strings.Builder
	b.WriteString("subscription_id,end_date,cm_name,cm_email,product\n")
	for i := range n {
		id := fmt.Sprintf("3300%08d", i+1)
		fmt.Fprintf(&b, "%s,%s,Manager %d,cm%d@example.com,Design Suite\n", id, end, i+1, i+1)
		keys[i] = subscription.NoticeKey{SubscriptionID: id, EndDate: end, Milestone: 30}
	}
	path := filepath.Join(t.TempDir(), "subs.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := api.CLI(t, "import", path); res.Code != 0 {
		t.Fatalf("import: exit %d: %s %s", res.Code, res.Stdout, res.Stderr)
	}

	notifierEnv := maps.Clone(env)
	notifierEnv["RENEWALS_SMTP_URL"] = smtp.URL()
	notifierEnv["RENEWALS_ACK_WAIT"] = "2s"
	notifierEnv["RENEWALS_WORKERS"] = "16"
	for range 3 {
		startServe(t, "notifier", notifierEnv)
	}
	var schedulers []*serveProc
	for range 2 {
		schedulers = append(schedulers, startServe(t, "scheduler", env))
	}

	_, js := testenv.Connect(t, c.URLs())
	// Every stream the service declared keeps three replicas.
	for _, name := range []string{event.StreamName, "KV_" + kvstore.SubscriptionsBucket, "KV_" + kvstore.LedgerBucket,
		kvstore.KeysStream, kvstore.EndsStream, "KV_renewals_leases"} {
		var replicas int
		testenv.Eventually(t, 30*time.Second, "stream "+name+" declared", func() bool {
			st, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			replicas = st.CachedInfo().Config.Replicas
			return true
		})
		if replicas != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, replicas)
		}
	}

	// The ledger as the service keeps it, opened while every server is up
	// (declaring during a leader election can time out); its reads below
	// are retried until the deadline.
	_, ledger, err := kvstore.NewWith(ctx, js, kvstore.Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}

	leaderOf := func(stream string) int {
		var i = -1
		testenv.Eventually(t, 30*time.Second, "a leader of stream "+stream, func() bool {
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := js.Stream(ictx, stream)
			if err != nil {
				return false
			}
			info := st.CachedInfo()
			if info.Cluster == nil {
				return false
			}
			i = c.Index(info.Cluster.Leader)
			return i >= 0
		})
		return i
	}

	smtp.WaitFor(n/10, 60*time.Second)
	first := leaderOf(event.StreamName)
	at1 := len(smtp.Messages())
	c.Stop(first)
	t.Logf("stopped %s, the leader of %s, after %d of %d emails", c.Name(first), event.StreamName, at1, n)
	smtp.WaitFor(min(n, at1+n/10), 60*time.Second) // the service carries on with two of three
	c.Start(first)
	second := leaderOf(event.StreamName)
	if second == first {
		second = (first + 1) % 3
	}
	at2 := len(smtp.Messages())
	c.Stop(second)
	t.Logf("restarted %s; stopped %s after %d of %d emails", c.Name(first), c.Name(second), at2, n)
	smtp.WaitFor(min(n, at2+n/10), 60*time.Second)
	c.Start(second)
	if at1 >= n || at2 >= n {
		t.Errorf("a server stopped after the batch (%d and %d of %d sent): not mid-batch", at1, at2, n)
	}

	var missing []subscription.NoticeKey // as of the last look
	var readErr error
	defer func() { // says what was left when the wait below gives up
		if !t.Failed() {
			return
		}
		// Where the missing notices stopped: published or not (the stream's
		// due messages), delivered, in hand or acknowledged (the consumer).
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if st, err := js.Stream(ictx, event.StreamName); err != nil {
			t.Logf("stream %s: %v", event.StreamName, err)
		} else if info, err := st.Info(ictx, jetstream.WithSubjectFilter("renewals.notice.>")); err != nil {
			t.Logf("stream %s: %v", event.StreamName, err)
		} else {
			t.Logf("stream %s holds, by subject: %v", event.StreamName, info.State.Subjects)
		}
		if cons, err := js.Consumer(ictx, event.StreamName, notifier.DefaultConsumer.Durable); err != nil {
			t.Logf("consumer %s: %v", notifier.DefaultConsumer.Durable, err)
		} else if ci, err := cons.Info(ictx); err != nil {
			t.Logf("consumer %s: %v", notifier.DefaultConsumer.Durable, err)
		} else {
			t.Logf("consumer %s: %d pending, %d in hand unacknowledged, %d redelivered, acknowledged to stream seq %d, delivered to %d",
				ci.Name, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.AckFloor.Stream, ci.Delivered.Stream)
		}
		if readErr != nil {
			t.Logf("the ledger could not be read: %v (%d emails received)", readErr, len(smtp.Messages()))
			return
		}
		if len(missing) == 0 {
			return
		}
		e, err := ledger.Get(ctx, missing[0])
		t.Logf("%d of %d notices not sent in the ledger (%d emails received); the first, %s: %+v %v",
			len(missing), n, len(smtp.Messages()), missing[0], e, err)
	}()
	testenv.Eventually(t, 5*time.Minute, fmt.Sprintf("%d notices sent in the ledger", n), func() bool {
		sent, err := ledger.Sent(ctx, keys)
		if readErr = err; err != nil {
			return false
		}
		missing = missing[:0]
		for _, k := range keys {
			if !sent[k] {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0
	})

	got := map[string]int{}
	for _, m := range smtp.Messages() {
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
	dups := 0
	for _, k := range slices.Sorted(maps.Keys(got)) {
		switch {
		case !want[k]:
			t.Errorf("unexpected: %s received %d times", k, got[k])
		case got[k] > 1:
			dups += got[k] - 1
			key, _ := subscription.ParseNoticeKey(k)
			if e, err := ledger.Get(ctx, key); err != nil || !e.Ambiguous {
				t.Errorf("duplicated: %s received %d times, ledger not ambiguous (%+v, %v)", k, got[k], e, err)
			}
		}
	}
	retried := 0
	for _, p := range schedulers {
		p.mu.Lock()
		for _, l := range p.lines {
			if strings.Contains(l, "scheduler pass failed; trying again") {
				retried++
			}
		}
		p.mu.Unlock()
	}
	t.Logf("%d notices, %d emails, %d duplicates (each flagged ambiguous); the schedulers tried a failed pass again %d times", n, len(smtp.Messages()), dups, retried)
}
