package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/redisstore"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/scheduler"
)

// Sizes of the catch-up benchmark: a million stored subscriptions, one in ten
// of them inside the renewal window and due.
const (
	benchStored = 1_000_000
	benchDueOne = 10 // one subscription in benchDueOne is due
	benchLoad   = 5000
)

var benchZones = []string{"", "Europe/London", "America/Los_Angeles", "Asia/Kolkata", "Australia/Sydney"}

// benchSub is subscription i of the benchmark portfolio, as seen on day
// today: every benchDueOne-th ends 1 to 89 days later (due in every zone, at
// its current stage), the rest end 120 days or more later (outside the window).
func benchSub(i int, today subscription.Date) subscription.Subscription {
	id := fmt.Sprintf("%012d", 120000000000+i)
	end := today.AddDays(120 + i%700)
	if i%benchDueOne == 0 {
		end = today.AddDays(1 + (i/benchDueOne)%89)
	}
	return subscription.Subscription{
		ID: id, EndDate: end, CustomerAccount: "ACC-" + id, CustomerName: "Customer " + id,
		Product: "CAD Suite Professional", Status: subscription.StatusActive, Term: "12 months",
		Timezone: benchZones[i%len(benchZones)], Locale: "en-GB",
		ContractManager: subscription.Contact{Name: "CM " + id, Email: "cm" + id + "@customer.example", Phone: "+44 20 7946 0000"},
		PrimaryAdmin:    subscription.Contact{Name: "PA " + id, Email: "pa" + id + "@customer.example"},
	}
}

// BenchmarkCatchUpPass is one scheduler pass, as a cron pass runs it (today
// reckoned per subscription zone), over a million subscriptions stored in
// Redis of which a hundred thousand are due, publishing into an embedded
// NATS JetStream with a message id per event. Loading is not timed. It
// reports the due events published per second of the pass.
func BenchmarkCatchUpPass(b *testing.B) {
	ctx := context.Background()
	rd := testenv.StartRedis(b)
	store, ledger, err := redisstore.Open(ctx, rd.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	ns := testenv.NATS(b)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := natsbus.NewJetStream(nc)
	if err != nil {
		b.Fatal(err)
	}

	now := time.Date(2027, 6, 1, 6, 0, 0, 0, time.UTC)
	today := subscription.DateOf(now)
	loadStart := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Go(func() {
			subs := make([]subscription.Subscription, 0, benchLoad)
			for lo := w * benchLoad; lo < benchStored; lo += 2 * benchLoad {
				subs = subs[:0]
				for i := lo; i < min(lo+benchLoad, benchStored); i++ {
					subs = append(subs, benchSub(i, today))
				}
				if _, err := store.Upsert(ctx, subs); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d subscriptions in %v", benchStored, time.Since(loadStart).Round(time.Millisecond))
	// The load makes Redis rewrite its append-only file in a forked child;
	// let that finish, so the pass does not share the CPUs with it.
	rc := rd.Client(b)
	testenv.Eventually(b, 5*time.Minute, "Redis to finish rewriting its append-only file", func() bool {
		info, err := rc.Info(ctx, "persistence").Result()
		return err == nil && strings.Contains(info, "aof_rewrite_in_progress:0") &&
			strings.Contains(info, "aof_rewrite_scheduled:0") && strings.Contains(info, "rdb_bgsave_in_progress:0")
	})

	s := &scheduler.Scheduler{
		Store: store, Ledger: ledger, JS: js, Milestones: subscription.DefaultMilestones,
		Location: time.UTC, Now: func() time.Time { return now }, Log: zap.NewNop(),
	}
	var published, due, passes int
	var took time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		// A fresh stream each time, so every pass publishes anew rather than
		// hitting the duplicate window of the one before.
		if err := js.DeleteStream(ctx, event.StreamName); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			b.Fatal(err)
		}
		if err := natsbus.EnsureStream(ctx, js); err != nil {
			b.Fatal(err)
		}
		stopProfile := profilePass(b)
		b.StartTimer()
		start := time.Now()
		res, err := s.Pass(ctx, subscription.Date{}, false)
		took += time.Since(start)
		stopProfile()
		if err != nil {
			b.Fatal(err)
		}
		if want := benchStored / benchDueOne; res.Published != want || res.Due != want {
			b.Fatalf("pass published %d of %d due, want %d", res.Published, res.Due, want)
		}
		published += res.Published
		due += res.Due
		passes++
	}
	b.ReportMetric(float64(published)/took.Seconds(), "events/s")
	b.ReportMetric(float64(due)/float64(passes), "due/pass")
	b.ReportMetric(took.Seconds()/float64(passes), "s/pass")
}

// profilePass writes a CPU profile of the pass alone, without the load, to
// the file named by RENEWALS_BENCH_PASS_CPUPROFILE when it is set.
func profilePass(b *testing.B) (stop func()) {
	path := os.Getenv("RENEWALS_BENCH_PASS_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
