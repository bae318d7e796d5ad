package notifier_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"renewals/pkg/event"
	"renewals/pkg/mailer"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/notifier"
	"renewals/templates"
)

// TestTransientRepliesAreRetried: a 421 or 451 reply is retried with
// back-off and the notice then goes exactly once.
func TestTransientRepliesAreRetried(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault testenv.Fault
	}{
		{"421 at RCPT", testenv.Fault{Stage: testenv.StageRcpt, Code: 421, Times: 2}},
		{"451 at DATA", testenv.Fault{Stage: testenv.StageData, Code: 451, Times: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := setup(t, "")
			keys := r.subs(3)
			f := tc.fault
			f.Rcpt = cmEmail(0)
			r.smtp.Inject(f)
			r.start(fastConsumer, nil)
			r.due(keys...)
			got := r.events.wait(t, 10*time.Second, strs(keys)...)
			for k, o := range got {
				if o.Outcome != subscription.OutcomeSent {
					t.Errorf("%s: outcome %s (%s), want sent", k, o.Outcome, o.Reason)
				}
			}
			if dups := r.checkExactlyOnce(keys); len(dups) > 0 {
				t.Errorf("duplicates after a %s: %v", tc.name, dups)
			}
			e, err := r.ledger.Get(context.Background(), keys[0])
			if err != nil || e.Outcome != subscription.OutcomeSent || e.Attempts != 3 || e.Ambiguous {
				t.Errorf("ledger entry of the retried notice = %+v, %v; want sent after 3 attempts, not ambiguous", e, err)
			}
		})
	}
}

// TestPermanentReplyFailsWithoutRetry: a 550 for one recipient fails that
// notice at once with a failed event; the others go.
func TestPermanentReplyFailsWithoutRetry(t *testing.T) {
	t.Parallel()
	r := setup(t, "")
	keys := r.subs(4)
	r.smtp.Inject(testenv.Fault{Rcpt: cmEmail(1), Stage: testenv.StageRcpt, Code: 550})
	r.start(fastConsumer, nil)
	r.due(keys...)
	got := r.events.wait(t, 10*time.Second, strs(keys)...)
	for i, k := range keys {
		o := got[k.String()]
		want := subscription.OutcomeSent
		if i == 1 {
			want = subscription.OutcomeFailed
		}
		if o.Outcome != want {
			t.Errorf("%s: outcome %s, want %s", k, o.Outcome, want)
		}
	}
	failed := got[keys[1].String()]
	if !strings.HasPrefix(failed.Reason, "550") || strings.Contains(failed.Reason, cmEmail(1)) {
		t.Errorf("failed reason %q: want the 550 reply without the address", failed.Reason)
	}
	e, err := r.ledger.Get(context.Background(), keys[1])
	if err != nil || e.Outcome != subscription.OutcomeFailed || e.Attempts != 1 {
		t.Errorf("ledger entry = %+v, %v; want failed after one attempt", e, err)
	}
	checkExactlyOnce(t, received(t, r.smtp), []subscription.NoticeKey{keys[0], keys[2], keys[3]}, r.ledger)
	// 550 struck at RCPT: no attempt may follow it.
	for _, o := range r.events.snapshot() {
		if o.NoticeKey == keys[1] && o.Outcome != subscription.OutcomeFailed {
			t.Errorf("a second outcome for the failed notice: %+v", o)
		}
	}
}

// TestDropMidData: the connection is lost after the message data, before the
// reply. The notice is retried; when the server had in fact taken the first
// copy, the contract manager gets two and the ledger says so.
func TestDropMidData(t *testing.T) {
	for _, deliver := range []bool{false, true} {
		name := "lost"
		if deliver {
			name = "delivered"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := setup(t, "")
			keys := r.subs(3)
			r.smtp.Inject(testenv.Fault{Rcpt: cmEmail(0), Action: testenv.DropBeforeReply, Deliver: deliver, Times: 1})
			r.start(fastConsumer, nil)
			r.due(keys...)
			got := r.events.wait(t, 10*time.Second, strs(keys)...)
			if o := got[keys[0].String()]; o.Outcome != subscription.OutcomeSent || !o.Ambiguous {
				t.Errorf("outcome after a drop mid-DATA = %+v; want sent, ambiguous", o)
			}
			dups := r.checkExactlyOnce(keys)
			if deliver && (len(dups) != 1 || dups[0] != keys[0].String()) {
				t.Errorf("duplicates = %v; want exactly %s (delivered before the drop, then resent)", dups, keys[0])
			}
			if !deliver && len(dups) != 0 {
				t.Errorf("duplicates = %v; want none", dups)
			}
			e, err := r.ledger.Get(context.Background(), keys[0])
			if err != nil || e.Outcome != subscription.OutcomeSent || !e.Ambiguous || e.Attempts != 2 {
				t.Errorf("ledger entry = %+v, %v; want sent, ambiguous, 2 attempts", e, err)
			}
			for _, k := range keys[1:] {
				if e, _ := r.ledger.Get(context.Background(), k); e.Ambiguous {
					t.Errorf("%s flagged ambiguous without cause", k)
				}
			}
		})
	}
}

// TestRetriesExhausted: a notice that never gets through within MaxDeliver
// attempts ends failed, in the ledger and with an event.
func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	r := setup(t, "")
	keys := r.subs(2)
	r.smtp.Inject(testenv.Fault{Rcpt: cmEmail(0), Stage: testenv.StageRcpt, Code: 451})
	cc := fastConsumer
	cc.MaxDeliver = 3
	r.start(cc, nil)
	r.due(keys...)
	got := r.events.wait(t, 10*time.Second, strs(keys)...)
	if o := got[keys[0].String()]; o.Outcome != subscription.OutcomeFailed || !strings.Contains(o.Reason, "retries exhausted") {
		t.Errorf("outcome = %+v; want failed, retries exhausted", o)
	}
	if o := got[keys[1].String()]; o.Outcome != subscription.OutcomeSent {
		t.Errorf("the other notice: %+v; want sent", o)
	}
	e, err := r.ledger.Get(context.Background(), keys[0])
	if err != nil || e.Outcome != subscription.OutcomeFailed {
		t.Errorf("ledger entry = %+v, %v; want failed", e, err)
	}
	checkExactlyOnce(t, received(t, r.smtp), keys[1:], r.ledger)
}

// TestRetriesExhaustedByTimeouts: a notice whose every delivery times out
// (the worker holding it hangs) is failed from JetStream's MAX_DELIVERIES
// advisory, since no delivery ever reaches the notifier's own check.
func TestRetriesExhaustedByTimeouts(t *testing.T) {
	t.Parallel()
	r := setup(t, "")
	keys := r.subs(2)
	cc := fastConsumer
	cc.MaxDeliver = 2
	cc.AckWait = 300 * time.Millisecond
	cc.Lease = 450 * time.Millisecond
	hang := make(chan struct{})
	r.start(cc, func(n *notifier.Notifier) {
		n.Pause = func(step string) {
			if step == "after-claim" {
				<-hang
			}
		}
	})
	t.Cleanup(func() { close(hang) }) // before the notifier stops: cleanups run last-in first-out
	r.due(keys[0])
	got := r.events.wait(t, 10*time.Second, keys[0].String())
	if o := got[keys[0].String()]; o.Outcome != subscription.OutcomeFailed || !strings.Contains(o.Reason, "retries exhausted") {
		t.Errorf("outcome = %+v; want failed, retries exhausted", o)
	}
	e, err := r.ledger.Get(context.Background(), keys[0])
	if err != nil || e.Outcome != subscription.OutcomeFailed {
		t.Errorf("ledger entry = %+v, %v; want failed", e, err)
	}
	if n := len(r.smtp.Messages()); n != 0 {
		t.Errorf("%d messages sent by hung workers", n)
	}
}

// TestPoisonMessage: a due message that is not an event is terminated with a
// failed event, and the notices behind it flow on.
func TestPoisonMessage(t *testing.T) {
	t.Parallel()
	r := setup(t, "")
	keys := r.subs(3)
	r.start(fastConsumer, nil)
	r.due(keys[0])
	if _, err := r.bus.JS.Publish(context.Background(), event.SubjectDue(45), []byte(`{"notice_key": not json`)); err != nil {
		t.Fatal(err)
	}
	r.due(keys[1:]...)
	r.events.wait(t, 10*time.Second, strs(keys)...)
	var poison int
	for _, o := range r.events.snapshot() {
		if o.NoticeKey.SubscriptionID == "" {
			poison++
			if o.Outcome != subscription.OutcomeFailed || !strings.Contains(o.Reason, "unreadable due message") {
				t.Errorf("poison outcome = %+v", o)
			}
		}
	}
	if poison != 1 {
		t.Errorf("%d failed events for the poison message, want 1", poison)
	}
	r.checkExactlyOnce(keys)
	// Terminated, not left to be redelivered.
	cons, err := r.bus.JS.Consumer(context.Background(), event.StreamName, fastConsumer.Durable)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "no pending or unacknowledged due messages", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// TestShutdownDrains: when the notifier's context ends with sends under way
// behind a slow relay, Run returns within the drain time; the notices that
// had not started out are handed back at once, so a second notifier sends
// them long before their ack wait would have run out, each exactly once.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	r := setup(t, "")
	r.smtp.SetDelay(300 * time.Millisecond)
	keys := r.subs(40)
	cc := fastConsumer
	cc.AckWait, cc.Lease = time.Minute, 90*time.Second // a notice left unacknowledged would wait a minute

	cfg, err := mailer.ParseURL(r.smtp.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Workers = 2
	sender, err := mailer.NewSMTP(cfg, "renewals@example.net", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	renderer, err := render.New(templates.FS, render.Reseller{Name: "Reseller Ltd", Email: "sales@example.net"})
	if err != nil {
		t.Fatal(err)
	}
	first := &notifier.Notifier{
		JS: r.bus.JS, Store: r.store, Ledger: r.ledger, Sender: sender, Renderer: renderer,
		Milestones: subscription.DefaultMilestones, Location: time.UTC, Now: time.Now,
		Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Consumer: cc, Workers: 16,
		Drain: 5 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	r.due(keys...)
	r.smtp.WaitFor(4, 20*time.Second)
	cancel()
	stopped := time.Now()
	var took time.Duration
	select {
	case err := <-done:
		took = time.Since(stopped)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(first.Drain + 5*time.Second):
		t.Fatalf("Run still running %v after its context ended (drain %v)", time.Since(stopped), first.Drain)
	}
	at := len(r.smtp.Messages())
	if at >= len(keys) {
		t.Fatalf("all %d sent before the shutdown: nothing was left to hand back", at)
	}

	r.start(cc, nil)
	r.events.wait(t, 20*time.Second, strs(keys)...) // well inside the minute of ack wait
	if dups := r.checkExactlyOnce(keys); len(dups) > 0 {
		t.Errorf("duplicates after a drained shutdown: %v", dups)
	}
	t.Logf("shut down after %d of %d sent; Run returned in %v; the rest went from the second notifier",
		at, len(keys), took.Round(time.Millisecond))
}

// TestRedeliveryInHandIsDropped: a worker holds a notice past its ack wait
// before the send (here paused after the claim), so JetStream delivers it
// again to the same process. The second delivery is recognised as the one in
// hand and dropped, not raced: the notice goes once, not flagged, after one
// claim.
func TestRedeliveryInHandIsDropped(t *testing.T) {
	t.Parallel()
	r := setup(t, "")
	keys := r.subs(1)
	cc := fastConsumer
	cc.AckWait, cc.Lease = 300*time.Millisecond, 5*time.Second
	core, logs := observer.New(zap.DebugLevel)
	dropped := func() bool { return logs.FilterMessage("redelivered notice still in hand; dropped").Len() > 0 }
	var once sync.Once
	r.start(cc, func(n *notifier.Notifier) {
		n.Log = zap.New(core)
		n.Pause = func(step string) {
			if step != "after-claim" {
				return
			}
			once.Do(func() {
				// Hold the notice until its redelivery has come and gone.
				deadline := time.Now().Add(10 * time.Second)
				for !dropped() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond) // polling the log with a deadline
				}
			})
		}
	})
	r.due(keys[0])
	got := r.events.wait(t, 15*time.Second, keys[0].String())
	if !dropped() {
		t.Fatal("the notice was not delivered again while in hand, or the redelivery was not recognised")
	}
	if o := got[keys[0].String()]; o.Outcome != subscription.OutcomeSent || o.Ambiguous || o.Attempts != 1 {
		t.Errorf("outcome = %+v; want sent once, 1 attempt, not ambiguous", o)
	}
	r.checkExactlyOnce(keys)
}
