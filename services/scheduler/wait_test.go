package scheduler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/scheduler"
)

func waitKey(i int) subscription.NoticeKey {
	return subscription.NoticeKey{SubscriptionID: fmt.Sprintf("W%06d", i), EndDate: subscription.MustDate("2027-03-31"), Milestone: 90}
}

// outcomeEvent is the encoded outcome event of key, as the notifier
// publishes it, and its subject.
func outcomeEvent(t testing.TB, key subscription.NoticeKey, out subscription.Outcome) (string, []byte) {
	t.Helper()
	subject := event.OutcomeSubject(out)
	ev, err := event.New(subject, key.String(), time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC),
		event.NoticeOutcome{NoticeKey: key, SubscriptionID: key.SubscriptionID, EndDate: key.EndDate, Milestone: key.Milestone, Outcome: out})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return subject, data
}

func publishOutcome(t testing.TB, nc *nats.Conn, key subscription.NoticeKey, out subscription.Outcome) {
	t.Helper()
	subject, data := outcomeEvent(t, key, out)
	if err := nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
}

// TestWaitCountsEachOutcomeOnce: outcomes that came before Wait and after
// it count, each key once, a duplicate with an outcome in the ledger counts
// from the ledger, outcomes of other keys do not count, and Wait returns
// only when every key has one (or with the number still open when its
// context ends).
func TestWaitCountsEachOutcomeOnce(t *testing.T) {
	r := newRig(t, false)
	pub, err := nats.Connect(r.nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()

	// A duplicate whose outcome the ledger holds already.
	dupSent := waitKey(100)
	if err := r.ledger.Claim(ctx, dupSent, "tok", time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ledger.Confirm(ctx, dupSent, "tok", subscription.Entry{Key: dupSent, Outcome: subscription.OutcomeSent, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	dupOpen := waitKey(101) // a duplicate the ledger has no outcome for

	o, err := scheduler.WatchOutcomes(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	published := []subscription.NoticeKey{waitKey(0), waitKey(1), waitKey(2), waitKey(3)}
	// Before Wait: key 0's outcome, and one for a key of no interest. A
	// first Wait for key 0 alone returns once it arrived.
	publishOutcome(t, pub, published[0], subscription.OutcomeSkipped)
	publishOutcome(t, pub, waitKey(999), subscription.OutcomeFailed)
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if counts, err := o.Wait(wctx, r.ledger, published[:1], nil); err != nil || counts[subscription.OutcomeSkipped] != 1 {
		t.Fatalf("Wait for key 0 = %v, %v; want 1 skipped", counts, err)
	}

	type result struct {
		counts map[subscription.Outcome]int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		counts, err := o.Wait(ctx, r.ledger, published, []subscription.NoticeKey{dupSent, dupOpen})
		done <- result{counts, err}
	}()
	publishOutcome(t, pub, published[1], subscription.OutcomeSent)
	publishOutcome(t, pub, published[1], subscription.OutcomeSent) // a repeat counts once
	publishOutcome(t, pub, published[2], subscription.OutcomeFailed)
	publishOutcome(t, pub, dupOpen, subscription.OutcomeUndeliverable)
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	// Key 3 is still open.
	select {
	case res := <-done:
		t.Fatalf("Wait returned %v, %v with a key still open", res.counts, res.err)
	default:
	}
	publishOutcome(t, pub, published[3], subscription.OutcomeSent)
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return within 10s of the last outcome")
	}
	want := map[subscription.Outcome]int{
		subscription.OutcomeSent: 3, subscription.OutcomeSkipped: 1,
		subscription.OutcomeFailed: 1, subscription.OutcomeUndeliverable: 1,
	}
	if res.err != nil || fmt.Sprint(res.counts) != fmt.Sprint(want) {
		t.Errorf("Wait = %v, %v; want %v", res.counts, res.err, want)
	}

	// A second Wait whose keys never get an outcome ends with its context.
	ended, end := context.WithCancel(ctx)
	end()
	if _, err := o.Wait(ended, r.ledger, []subscription.NoticeKey{waitKey(500), waitKey(501)}, nil); !errors.Is(err, context.Canceled) || err.Error() != "2 notices still without an outcome: context canceled" {
		t.Errorf("Wait with an ended context = %v, want the 2 still open and context.Canceled", err)
	}
}

// BenchmarkWaitOutcomes is `run --wait` following the outcomes of a pass
// that published open notices, all sent: each iteration publishes one
// outcome event per key on a real NATS server and waits for Wait to return.
// ns/outcome must not grow with the keys open.
func BenchmarkWaitOutcomes(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("open=%d", n), func(b *testing.B) {
			ns := testenv.NATS(b)
			sub, err := nats.Connect(ns.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			pub, err := nats.Connect(ns.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			keys := make([]subscription.NoticeKey, n)
			events := make([][]byte, n)
			var subject string
			for i := range keys {
				keys[i] = waitKey(i)
				subject, events[i] = outcomeEvent(b, keys[i], subscription.OutcomeSent)
			}
			for b.Loop() {
				o, err := scheduler.WatchOutcomes(sub)
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() {
					counts, err := o.Wait(context.Background(), nil, keys, nil)
					if err == nil && counts[subscription.OutcomeSent] != n {
						err = fmt.Errorf("counted %v, want %d sent", counts, n)
					}
					done <- err
				}()
				for _, data := range events {
					if err := pub.Publish(subject, data); err != nil {
						b.Fatal(err)
					}
				}
				if err := pub.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				o.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/outcome")
		})
	}
}
