package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"renewals/pkg/config"
	"renewals/pkg/event"
	"renewals/pkg/kvstore"
	"renewals/pkg/natsbus"
	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/scheduler"
)

// rig is a real NATS server with the RENEWALS stream, and a store and ledger:
// the embedded key-value store, or Redis.
type rig struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	store  subscription.Store
	ledger subscription.Ledger
}

func newRig(t *testing.T, redis bool) *rig {
	t.Helper()
	ctx := context.Background()
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r := &rig{nc: nc}
	if r.js, err = natsbus.NewJetStream(nc); err != nil {
		t.Fatal(err)
	}
	if err := natsbus.EnsureStream(ctx, r.js); err != nil {
		t.Fatal(err)
	}
	if redis {
		s, l, err := redisstore.Open(ctx, testenv.StartRedis(t).URL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		r.store, r.ledger = s, l
	} else {
		s, l, err := kvstore.New(ctx, r.js)
		if err != nil {
			t.Fatal(err)
		}
		r.store, r.ledger = s, l
	}
	return r
}

// scheduler returns a scheduler of its own (its own JetStream handle, no
// lease) on the rig, with the clock stopped at now and zone loc.
func (r *rig) scheduler(t *testing.T, now time.Time, loc *time.Location, log *zap.Logger) *scheduler.Scheduler {
	t.Helper()
	js, err := natsbus.NewJetStream(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &scheduler.Scheduler{
		Store: r.store, Ledger: r.ledger, JS: js, Milestones: subscription.DefaultMilestones,
		Location: loc, Now: func() time.Time { return now }, Log: log,
	}
}

func (r *rig) upsert(t *testing.T, subs ...subscription.Subscription) {
	t.Helper()
	if _, err := r.store.Upsert(context.Background(), subs); err != nil {
		t.Fatal(err)
	}
}

// dueInStream returns how many due events the RENEWALS stream holds.
func (r *rig) dueInStream(t *testing.T) int {
	t.Helper()
	st, err := r.js.Stream(context.Background(), event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(event.SubjectDuePrefix+">"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// markSent records keys as sent, as the notifier does: claim, then confirm.
func (r *rig) markSent(t *testing.T, keys ...subscription.NoticeKey) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	for _, k := range keys {
		if err := r.ledger.Claim(ctx, k, "test", now, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ledger.Confirm(ctx, k, "test", subscription.Entry{Key: k, Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: now}); err != nil {
			t.Fatal(err)
		}
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func sub(id string, end subscription.Date, zone string) subscription.Subscription {
	return subscription.Subscription{
		ID: id, EndDate: end, Status: subscription.StatusActive, Timezone: zone,
		ContractManager: subscription.Contact{Name: "CM " + id, Email: "cm." + id + "@example.com"},
	}
}

func keysOf(ns []scheduler.Planned) []string {
	var out []string
	for _, n := range ns {
		out = append(out, fmt.Sprintf("%s/%d", n.Key, n.DaysLeft))
	}
	slices.Sort(out)
	return out
}

// TestPassWindowAcrossZones: zones from UTC-12 to UTC+14 put two calendar
// days between a subscription's today and the default zone's. A pass reckons
// days left in each subscription's zone and must still read it: on its end
// date (the last chance for its 30-day notice) and 90 days before it.
func TestPassWindowAcrossZones(t *testing.T) {
	r := newRig(t, false)
	// 11:00 UTC on 10 March 2030: 9 March 23:00 in Etc/GMT+12, 11 March 01:00 in Kiritimati.
	now := time.Date(2030, 3, 10, 11, 0, 0, 0, time.UTC)
	d := subscription.MustDate
	r.upsert(t,
		sub("west-last-day", d("2030-03-09"), "Etc/GMT+12"),         // 0 days left in its zone
		sub("west-90", d("2030-06-07"), "Etc/GMT+12"),               // 90 days left in its zone
		sub("east-last-day", d("2030-03-11"), "Pacific/Kiritimati"), // 0 days left in its zone
		sub("east-90", d("2030-06-09"), "Pacific/Kiritimati"),       // 90 days left in its zone
		sub("east-91", d("2030-06-10"), "Pacific/Kiritimati"),       // not yet
		sub("west-ended", d("2030-03-08"), "Etc/GMT+12"),            // ended yesterday in its zone
	)
	want := []string{
		"east-90:2030-06-09:90/90", "east-last-day:2030-03-11:30/0",
		"west-90:2030-06-07:90/90", "west-last-day:2030-03-09:30/0",
	}
	for _, def := range []string{"Pacific/Kiritimati", "Etc/GMT+12", "UTC"} {
		t.Run(def, func(t *testing.T) {
			s := r.scheduler(t, now, mustZone(t, def), nil)
			res, err := s.Pass(context.Background(), subscription.Date{}, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(res.Notices); !slices.Equal(got, want) {
				t.Fatalf("default zone %s: due %v, want %v", def, got, want)
			}
		})
	}
	if n := r.dueInStream(t); n != 0 {
		t.Fatalf("dry-run passes published %d events", n)
	}
}

// TestConcurrentPassesPublishEachNoticeOnce: two replicas pass at once with
// no lease between them; the stream keeps one due event per notice and
// drops the repeats. A pass run again after the duplicate window (simulated
// by a new stream with an empty duplicate table) publishes nothing for what
// the ledger shows as sent.
func TestConcurrentPassesPublishEachNoticeOnce(t *testing.T) {
	r := newRig(t, true)
	asOf := subscription.MustDate("2030-05-01")
	const n = 600
	var subs []subscription.Subscription
	var want []subscription.NoticeKey
	for i := range n {
		x := sub(fmt.Sprintf("s%04d", i), asOf.AddDays(i%91), "Europe/London")
		subs = append(subs, x)
		m, _ := subscription.DefaultMilestones.Stage(i % 91)
		want = append(want, subscription.NoticeKey{SubscriptionID: x.ID, EndDate: x.EndDate, Milestone: m})
	}
	r.upsert(t, subs...)

	now := time.Date(2030, 5, 1, 6, 0, 0, 0, time.UTC)
	a, b := r.scheduler(t, now, time.UTC, nil), r.scheduler(t, now, time.UTC, nil)
	var ra, rb scheduler.Result
	var ea, eb error
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Go(func() { <-start; ra, ea = a.Pass(context.Background(), asOf, false) })
	wg.Go(func() { <-start; rb, eb = b.Pass(context.Background(), asOf, false) })
	close(start)
	wg.Wait()
	if err := errors.Join(ea, eb); err != nil {
		t.Fatal(err)
	}
	if ra.Due != n || rb.Due != n {
		t.Fatalf("due %d and %d, want %d each", ra.Due, rb.Due, n)
	}
	if got := ra.Published + rb.Published; got != n {
		t.Errorf("published %d + %d, want %d in all", ra.Published, rb.Published, n)
	}
	if got := ra.Duplicates + rb.Duplicates; got != n {
		t.Errorf("duplicates %d + %d, want %d in all", ra.Duplicates, rb.Duplicates, n)
	}
	got := slices.Concat(ra.Keys, rb.Keys)
	slices.SortFunc(got, subscription.CompareKeys)
	slices.SortFunc(want, subscription.CompareKeys)
	if !slices.Equal(got, want) {
		t.Errorf("published keys differ from the due set: %d published, %d due", len(got), len(want))
	}
	if got := r.dueInStream(t); got != n {
		t.Fatalf("the stream holds %d due events, want %d", got, n)
	}

	// The notifier sends them; then, after the duplicate window, a pass
	// runs again: only the ledger can stop it now.
	r.markSent(t, want...)
	ctx := context.Background()
	if err := r.js.DeleteStream(ctx, event.StreamName); err != nil {
		t.Fatal(err)
	}
	if err := natsbus.EnsureStream(ctx, r.js); err != nil {
		t.Fatal(err)
	}
	again, err := a.Pass(ctx, asOf, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.AlreadySent != n || again.Due != 0 || again.Published != 0 || again.Duplicates != 0 {
		t.Fatalf("re-run: %d already sent, %d due, %d published, %d duplicates; want %d, 0, 0, 0",
			again.AlreadySent, again.Due, again.Published, again.Duplicates, n)
	}
	if got := r.dueInStream(t); got != 0 {
		t.Fatalf("the re-run published %d due events", got)
	}
}

// TestLease: one holder at a time; a waiting Acquire gets the lease once it
// is released; the holder renews it, so it outlives its TTL while held.
func TestLease(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	a, err := scheduler.NewLease(ctx, r.js, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := scheduler.NewLease(ctx, r.js, "b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scheduler.NewLease(ctx, r.js, "c", 0); err == nil {
		t.Fatal("NewLease with a zero TTL succeeded")
	}
	releaseA, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx); !errors.Is(err, scheduler.ErrLeaseHeld) {
		t.Fatalf("second Acquire: %v, want ErrLeaseHeld", err)
	}

	// Held past twice its TTL, it is still held: the holder renews it.
	kv, err := r.js.KeyValue(ctx, "renewals_leases")
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "scheduler-pass", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for renewals := 0; renewals < 6; {
		select {
		case e := <-w.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut || string(e.Value()) != "a" {
				t.Fatalf("lease entry changed to %v while a held it", e)
			}
			renewals++
		case <-deadline:
			t.Fatal("the holder did not renew the lease")
		}
	}
	w.Stop()
	if _, err := b.Acquire(ctx); !errors.Is(err, scheduler.ErrLeaseHeld) {
		t.Fatalf("Acquire after the TTL while renewed: %v, want ErrLeaseHeld", err)
	}

	// A waiting Acquire gets it once released.
	b.Wait = true
	got := make(chan error, 1)
	var releaseB func()
	go func() {
		var err error
		releaseB, err = b.Acquire(ctx)
		got <- err
	}()
	releaseA()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting Acquire did not get the released lease")
	}
	releaseB()
	cctx, cancel := context.WithCancel(ctx)
	releaseA, err = a.Acquire(cctx)
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	defer releaseA()
	b.Wait = true
	cancel()
	if _, err := b.Acquire(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting Acquire with a cancelled context: %v", err)
	}
}

// TestLeaseLeftBehindIsTakenBack: a lease its holder left behind (its
// release could not delete it, as when the pass failed on an outage) is
// taken back at once by that holder, not after the TTL; another holder
// still finds it held, and so does a second pass of the holder while its
// first holds the lease.
func TestLeaseLeftBehindIsTakenBack(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	a, err := scheduler.NewLease(ctx, r.js, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b, err := scheduler.NewLease(ctx, r.js, "b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := r.js.KeyValue(ctx, "renewals_leases")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "scheduler-pass", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx); !errors.Is(err, scheduler.ErrLeaseHeld) {
		t.Fatalf("another holder's Acquire: %v, want ErrLeaseHeld", err)
	}
	release, err := a.Acquire(ctx)
	if err != nil {
		t.Fatalf("Acquire of the lease its holder left behind: %v", err)
	}
	if _, err := a.Acquire(ctx); !errors.Is(err, scheduler.ErrLeaseHeld) {
		t.Fatalf("a second Acquire while the first holds the lease: %v, want ErrLeaseHeld", err)
	}
	// A copy that waits, as the API's manual pass uses, knows the lease is
	// its process's and held: it waits rather than take it back.
	wait := *a
	wait.Wait = true
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := wait.Acquire(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiting copy's Acquire while the lease is held: %v, want it to wait", err)
	}
	release()
	releaseB, err := b.Acquire(ctx)
	if err != nil {
		t.Fatalf("another holder's Acquire after the release: %v", err)
	}
	releaseB()
}

// TestRunPassesAtStartAndStopsCleanly: Run passes at once, through the cron
// chain, and returns on cancel only after that pass.
func TestRunPassesAtStartAndStopsCleanly(t *testing.T) {
	r := newRig(t, false)
	now := time.Now()
	today := subscription.Today(now, time.UTC)
	r.upsert(t, sub("due-today", today.AddDays(40), ""))
	core, logs := observer.New(zapcore.InfoLevel)
	s := r.scheduler(t, now, time.UTC, zap.New(core))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, "0 6 1 1 *", config.CronParser) }()
	testenv.Eventually(t, 10*time.Second, "the start-up pass", func() bool {
		return logs.FilterMessage("scheduler pass").Len() == 1
	})
	if got := r.dueInStream(t); got != 1 {
		t.Fatalf("start-up pass published %d, want 1", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if err := s.Run(context.Background(), "0 6 * *", config.CronParser); err == nil || !strings.Contains(err.Error(), "RENEWALS_SCHEDULE") {
		t.Fatalf("Run with a bad spec: %v", err)
	}
}

// panicStore is the real store with a fault: reading the window panics.
type panicStore struct{ subscription.Store }

func (panicStore) EndingBetween(context.Context, subscription.Date, subscription.Date, func(subscription.Subscription) error) error {
	panic("boom")
}

// TestRunRecoversAPanickingPass: a pass that panics is logged at error and
// Run goes on, and returns on cancel, instead of taking the process down.
func TestRunRecoversAPanickingPass(t *testing.T) {
	r := newRig(t, false)
	core, logs := observer.New(zapcore.InfoLevel)
	s := r.scheduler(t, time.Now(), time.UTC, zap.New(core))
	s.Store = panicStore{r.store}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, "@every 1h", cron.NewParser(cron.Descriptor)) }()
	testenv.Eventually(t, 10*time.Second, "the recovered panic to be logged", func() bool {
		return logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessage("panic").Len() == 1
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// failingStore is the real store with a fault: reading the window fails
// the first fails times, as while NATS elects a new leader.
type failingStore struct {
	subscription.Store
	fails atomic.Int32
}

func (f *failingStore) EndingBetween(ctx context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error {
	if f.fails.Add(-1) >= 0 {
		return errors.New("nats: no responders available for request")
	}
	return f.Store.EndingBetween(ctx, from, to, fn)
}

// TestRunRetriesAFailedPass: a scheduled pass that fails is tried again
// after each of the retry waits, and the notices due go out once one
// succeeds, instead of a day later at the next scheduled run.
func TestRunRetriesAFailedPass(t *testing.T) {
	r := newRig(t, false)
	now := time.Now()
	r.upsert(t, sub("due-today", subscription.Today(now, time.UTC).AddDays(40), ""))
	core, logs := observer.New(zapcore.InfoLevel)
	s := r.scheduler(t, now, time.UTC, zap.New(core))
	store := &failingStore{Store: r.store}
	store.fails.Store(2)
	s.Store = store
	s.Retries = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, "0 6 1 1 *", config.CronParser) }()
	testenv.Eventually(t, 10*time.Second, "the third try of the start-up pass", func() bool {
		return logs.FilterMessage("scheduler pass").Len() == 1
	})
	if got := logs.FilterMessage("scheduler pass failed; trying again").Len(); got != 2 {
		t.Errorf("%d retries logged, want 2", got)
	}
	if got := r.dueInStream(t); got != 1 {
		t.Fatalf("the pass that succeeded published %d, want 1", got)
	}

	// A pass that keeps failing gives up after the last wait, at error.
	store.fails.Store(10)
	s.Retries = []time.Duration{time.Millisecond}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { done <- s.Run(ctx2, "0 6 1 1 *", config.CronParser) }()
	testenv.Eventually(t, 10*time.Second, "the pass to give up", func() bool {
		return logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessage("scheduler pass failed; the next scheduled pass tries again").Len() == 1
	})
	if got := store.fails.Load(); got != 8 {
		t.Errorf("%d tries, want 2: the pass and one retry", 10-got)
	}
	cancel2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// gatedStore counts its window reads and, with open set, holds each until
// open is closed, so that a pass holds the lease as long as a test needs.
type gatedStore struct {
	subscription.Store
	open  chan struct{}
	reads atomic.Int32
}

func (g *gatedStore) EndingBetween(ctx context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error {
	g.reads.Add(1)
	if g.open != nil {
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.EndingBetween(ctx, from, to, fn)
}

// TestSkippedPassRunsWhenTheHolderDies: a replica whose start-up pass finds
// the lease held by a replica that died mid-pass passes itself once that
// lease expires, rather than leave the day's notices to the next scheduled
// pass a day later.
func TestSkippedPassRunsWhenTheHolderDies(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	now := time.Now()
	r.upsert(t, sub("due-today", subscription.Today(now, time.UTC).AddDays(40), ""))
	lease, err := scheduler.NewLease(ctx, r.js, "b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := r.js.KeyValue(ctx, "renewals_leases")
	if err != nil {
		t.Fatal(err)
	}
	// The dead replica's lease, left to expire after the TTL.
	if _, err := kv.Create(ctx, "scheduler-pass", []byte("dead")); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	s := r.scheduler(t, now, time.UTC, zap.New(core))
	s.Lease = lease
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx, "0 6 1 1 *", config.CronParser) }()
	testenv.Eventually(t, 30*time.Second, "the pass once the dead replica's lease expired", func() bool {
		return logs.FilterMessage("scheduler pass").Len() == 1
	})
	if got := logs.FilterMessage("scheduler pass skipped: another replica holds the lease").Len(); got != 1 {
		t.Errorf("%d skips logged, want 1", got)
	}
	if got := logs.FilterMessage("scheduler pass: the replica that held the lease let it go without finishing the pass; passing now").Len(); got != 1 {
		t.Errorf("%d takeovers logged, want 1", got)
	}
	if got := r.dueInStream(t); got != 1 {
		t.Fatalf("the pass published %d, want 1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSkippedPassLeftToTheHolderThatFinished: a replica whose start-up pass
// was skipped while another replica's pass held the lease does not pass
// again once that pass has finished.
func TestSkippedPassLeftToTheHolderThatFinished(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	now := time.Now()
	r.upsert(t, sub("due-today", subscription.Today(now, time.UTC).AddDays(40), ""))
	leaseA, err := scheduler.NewLease(ctx, r.js, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	leaseB, err := scheduler.NewLease(ctx, r.js, "b", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gate := &gatedStore{Store: r.store, open: make(chan struct{})}
	a := r.scheduler(t, now, time.UTC, nil)
	a.Store, a.Lease = gate, leaseA
	passed := make(chan error, 1)
	go func() {
		_, err := a.Pass(ctx, subscription.Date{}, false)
		passed <- err
	}()
	testenv.Eventually(t, 10*time.Second, "a's pass to hold the lease and read", func() bool { return gate.reads.Load() == 1 })

	core, logs := observer.New(zapcore.InfoLevel)
	counted := &gatedStore{Store: r.store}
	b := r.scheduler(t, now, time.UTC, zap.New(core))
	b.Store, b.Lease = counted, leaseB
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(rctx, "0 6 1 1 *", config.CronParser) }()
	testenv.Eventually(t, 10*time.Second, "b's start-up pass to be skipped", func() bool {
		return logs.FilterMessage("scheduler pass skipped: another replica holds the lease").Len() == 1
	})
	close(gate.open)
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "b to find a's pass finished", func() bool {
		return logs.FilterMessage("scheduler pass: the replica that held the lease finished it").Len() == 1
	})
	if got := counted.reads.Load(); got != 0 {
		t.Errorf("b read the window %d times after a's pass finished, want 0", got)
	}
	if got := r.dueInStream(t); got != 1 {
		t.Fatalf("the stream holds %d due events, want 1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestForecast lists per day the notices that would go out, with
// reachability, leaving out what the ledger shows as sent, and changes
// nothing: no event published, no ledger entry written.
func TestForecast(t *testing.T) {
	for _, backend := range []string{"kv", "redis"} {
		t.Run(backend, func(t *testing.T) {
			r := newRig(t, backend == "redis")
			d := subscription.MustDate
			from := d("2030-01-01")
			noCM := sub("nocm", d("2030-02-15"), "")
			noCM.ContractManager = subscription.Contact{}
			cancelled := sub("cancelled", d("2030-02-10"), "")
			cancelled.Status = subscription.StatusCancelled
			r.upsert(t,
				sub("a", d("2030-03-01"), "Europe/London"), // 59 days out: the 90 at once
				sub("b", d("2030-04-15"), "America/Los_Angeles"),
				noCM,
				cancelled,
				sub("sent90", d("2030-02-20"), ""), // its 90-day notice already went
				sub("far", d("2031-01-01"), ""),
			)
			r.markSent(t, subscription.NoticeKey{SubscriptionID: "sent90", EndDate: d("2030-02-20"), Milestone: 90})
			before := ledgerOf(t, r, "a", "b", "nocm", "cancelled", "sent90", "far")

			s := r.scheduler(t, time.Now(), time.UTC, nil)
			days, err := s.Forecast(context.Background(), from, 60)
			if err != nil {
				t.Fatal(err)
			}
			if len(days) != 60 || days[0].Date != from || days[59].Date != from.AddDays(59) {
				t.Fatalf("forecast has %d days from %v to %v", len(days), days[0].Date, days[len(days)-1].Date)
			}
			got := map[string][]string{}
			for _, day := range days {
				for _, n := range day.Notices {
					got[day.Date.String()] = append(got[day.Date.String()], fmt.Sprintf("%s/%d/%v", n.Key, n.DaysLeft, n.Reachable))
				}
				slices.Sort(got[day.Date.String()])
			}
			want := map[string][]string{
				"2030-01-01": {"a:2030-03-01:90/59/true", "nocm:2030-02-15:45/45/false"},
				"2030-01-06": {"sent90:2030-02-20:45/45/true"},
				"2030-01-15": {"a:2030-03-01:45/45/true", "b:2030-04-15:90/90/true"},
				"2030-01-16": {"nocm:2030-02-15:30/30/false"},
				"2030-01-21": {"sent90:2030-02-20:30/30/true"},
				"2030-01-30": {"a:2030-03-01:30/30/true"},
				"2030-03-01": {"b:2030-04-15:45/45/true"},
			}
			for _, day := range slices.Sorted(maps.Keys(want)) {
				if !slices.Equal(got[day], want[day]) {
					t.Errorf("%s: forecast %v, want %v", day, got[day], want[day])
				}
			}
			for _, day := range slices.Sorted(maps.Keys(got)) {
				if _, ok := want[day]; !ok {
					t.Errorf("%s: forecast %v, want nothing", day, got[day])
				}
			}
			if n := r.dueInStream(t); n != 0 {
				t.Errorf("forecast published %d due events", n)
			}
			if after := ledgerOf(t, r, "a", "b", "nocm", "cancelled", "sent90", "far"); after != before {
				t.Errorf("the ledger changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func ledgerOf(t *testing.T, r *rig, ids ...string) string {
	t.Helper()
	var b strings.Builder
	for _, id := range ids {
		es, err := r.ledger.List(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%v;", id, es)
	}
	return b.String()
}

// TestDryRunListsMostUrgentFirst: a dry run lists its notices by days left,
// then by key, whatever order the readers of the window find them in and
// whatever zone puts a subscription a day ahead of its end date's order.
func TestDryRunListsMostUrgentFirst(t *testing.T) {
	r := newRig(t, false)
	asOf := subscription.MustDate("2030-05-01")
	zones := []string{"UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Europe/London"}
	var subs []subscription.Subscription
	for i := range 400 {
		subs = append(subs, sub(fmt.Sprintf("z%03d", (i*37)%400), asOf.AddDays(1+i%89), zones[i%len(zones)]))
	}
	r.upsert(t, subs...)
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	res, err := r.scheduler(t, now, time.UTC, nil).Pass(context.Background(), subscription.Date{}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Notices) != 400 {
		t.Fatalf("%d notices due, want 400", len(res.Notices))
	}
	sorted := slices.IsSortedFunc(res.Notices, func(a, b scheduler.Planned) int {
		if a.DaysLeft != b.DaysLeft {
			return a.DaysLeft - b.DaysLeft
		}
		return strings.Compare(a.Key.String(), b.Key.String())
	})
	if !sorted {
		t.Errorf("dry-run notices are not by days left, then key: %v ...", keysInOrder(res.Notices[:10]))
	}
}

func keysInOrder(ns []scheduler.Planned) []string {
	var out []string
	for _, n := range ns {
		out = append(out, fmt.Sprintf("%s/%d", n.Key, n.DaysLeft))
	}
	return out
}
