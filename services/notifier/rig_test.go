package notifier_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"renewals/pkg/event"
	"renewals/pkg/mailer"
	"renewals/pkg/natsbus"
	"renewals/pkg/redisstore"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/notifier"
	"renewals/templates"
)

// asOf is the simulated today of every due event the tests publish.
var asOf = subscription.MustDate("2030-01-01")

// endDate is 30 days after asOf: every test notice is a 30-day notice.
var endDate = asOf.AddDays(30)

// fastConsumer is the consumer tuning for tests: short enough that a
// redelivery or a lapsed lease takes well under a second.
var fastConsumer = notifier.ConsumerConfig{
	Durable:       "notifier",
	AckWait:       time.Second,
	MaxDeliver:    10,
	BackOff:       []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond},
	MaxAckPending: 1024,
	Lease:         1500 * time.Millisecond,
}

// rig is one notifier against its own NATS, Redis and SMTP servers.
type rig struct {
	t      *testing.T
	nats   string
	bus    *natsbus.Bus
	redis  *testenv.Redis
	store  *redisstore.Store
	ledger *redisstore.Ledger
	smtp   *testenv.SMTPServer
	events *outcomes
}

// setup starts the servers. natsURL may name a server the test owns (to
// restart it); empty starts a fresh one.
func setup(t *testing.T, natsURL string) *rig {
	t.Helper()
	if natsURL == "" {
		natsURL = testenv.NATS(t).ClientURL()
	}
	ctx := context.Background()
	bus, err := natsbus.Open(ctx, natsbus.Config{URL: natsURL, Name: "notifier test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	r := &rig{t: t, nats: natsURL, bus: bus, redis: testenv.StartRedis(t), smtp: testenv.SMTP(t)}
	r.store, r.ledger = redisstore.New(r.redis.Client(t))
	r.events = watch(t, bus.Conn)
	return r
}

// start runs a notifier until the test ends and returns it.
func (r *rig) start(cc notifier.ConsumerConfig, tune func(*notifier.Notifier)) *notifier.Notifier {
	r.t.Helper()
	cfg, err := mailer.ParseURL(r.smtp.URL())
	if err != nil {
		r.t.Fatal(err)
	}
	sender, err := mailer.NewSMTP(cfg, "renewals@example.net", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	renderer, err := render.New(templates.FS, render.Reseller{Name: "Reseller Ltd", Email: "sales@example.net"})
	if err != nil {
		r.t.Fatal(err)
	}
	n := &notifier.Notifier{
		JS: r.bus.JS, Store: r.store, Ledger: r.ledger, Sender: sender, Renderer: renderer,
		Milestones: subscription.DefaultMilestones, Location: time.UTC, Now: time.Now,
		Log: zaptest.NewLogger(r.t, zaptest.Level(zap.WarnLevel)), Consumer: cc, Workers: 8,
	}
	if tune != nil {
		tune(n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			r.t.Errorf("notifier: %v", err)
		}
		_ = sender.Close()
	})
	return n
}

// subs stores count active subscriptions ending on endDate, each with its own
// contract manager cm<i>@example.com, and returns their 30-day notice keys.
func (r *rig) subs(count int) []subscription.NoticeKey {
	r.t.Helper()
	var subs []subscription.Subscription
	var keys []subscription.NoticeKey
	for i := range count {
		id := fmt.Sprintf("1100%08d", i+1)
		subs = append(subs, subscription.Subscription{
			ID: id, EndDate: endDate, Product: "Design Suite", Status: subscription.StatusActive,
			ContractManager: subscription.Contact{Name: fmt.Sprintf("Manager %d", i+1), Email: cmEmail(i)},
		})
		keys = append(keys, subscription.NoticeKey{SubscriptionID: id, EndDate: endDate, Milestone: 30})
	}
	if _, err := r.store.Upsert(context.Background(), subs); err != nil {
		r.t.Fatal(err)
	}
	return keys
}

func cmEmail(i int) string { return fmt.Sprintf("cm%d@example.com", i+1) }

// due publishes a due event for each key, as the scheduler would.
func (r *rig) due(keys ...subscription.NoticeKey) {
	r.t.Helper()
	for _, k := range keys {
		ev, err := event.New(event.SubjectDue(k.Milestone), k.String(), time.Now(), event.NoticeDue{
			NoticeKey: k, SubscriptionID: k.SubscriptionID, EndDate: k.EndDate, Milestone: k.Milestone,
			DaysLeft: asOf.DaysUntil(k.EndDate), AsOf: asOf,
		})
		if err != nil {
			r.t.Fatal(err)
		}
		if _, err := natsbus.Publish(context.Background(), r.bus.JS, event.SubjectDue(k.Milestone), ev, k.String()); err != nil {
			r.t.Fatal(err)
		}
	}
}

// received counts the messages the SMTP server accepted per X-Renewal-Notice.
func received(t *testing.T, s *testenv.SMTPServer) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, m := range s.Messages() {
		msg, err := m.Parse()
		if err != nil {
			t.Fatal(err)
		}
		got[msg.Header.Get(mailer.HeaderNotice)]++
	}
	return got
}

// checkExactlyOnce compares the notice keys the SMTP server received with
// want: none missing, none extra, and none twice unless the ledger marked
// that notice ambiguous. It returns the keys received twice or more.
func (r *rig) checkExactlyOnce(want []subscription.NoticeKey) (dups []string) {
	r.t.Helper()
	return checkExactlyOnce(r.t, received(r.t, r.smtp), want, r.ledger)
}

func checkExactlyOnce(t *testing.T, got map[string]int, want []subscription.NoticeKey, ledger subscription.Ledger) (dups []string) {
	t.Helper()
	wantSet := map[string]bool{}
	for _, k := range want {
		wantSet[k.String()] = true
		if got[k.String()] == 0 {
			t.Errorf("missed: %s was never received", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if !wantSet[k] {
			t.Errorf("unexpected: %s received %d times, not due", k, got[k])
			continue
		}
		if got[k] < 2 {
			continue
		}
		dups = append(dups, k)
		key, _ := subscription.ParseNoticeKey(k)
		e, err := ledger.Get(context.Background(), key)
		if err != nil || !e.Ambiguous {
			t.Errorf("duplicated: %s received %d times but the ledger entry is not ambiguous (%+v, %v)", k, got[k], e, err)
		}
	}
	return dups
}

// outcomes follows the notice outcome events.
type outcomes struct {
	mu      sync.Mutex
	byKey   map[string][]event.NoticeOutcome
	all     []event.NoticeOutcome
	changed chan struct{}
}

func watch(t *testing.T, nc *nats.Conn) *outcomes {
	t.Helper()
	o := &outcomes{byKey: map[string][]event.NoticeOutcome{}, changed: make(chan struct{})}
	sub, err := nc.Subscribe("renewals.notice.*", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, event.SubjectDuePrefix) {
			return
		}
		var data event.NoticeOutcome
		ev, err := event.Decode(m.Data, &data)
		if err != nil {
			t.Errorf("undecodable outcome event on %s: %v", m.Subject, err)
			return
		}
		o.mu.Lock()
		o.byKey[ev.Subject] = append(o.byKey[ev.Subject], data)
		o.all = append(o.all, data)
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return o
}

// wait returns once every key has an outcome event, failing after timeout,
// and gives the last outcome of each key.
func (o *outcomes) wait(t *testing.T, timeout time.Duration, keys ...string) map[string]event.NoticeOutcome {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		o.mu.Lock()
		out := map[string]event.NoticeOutcome{}
		var open []string
		for _, k := range keys {
			if evs := o.byKey[k]; len(evs) > 0 {
				out[k] = evs[len(evs)-1]
			} else {
				open = append(open, k)
			}
		}
		changed := o.changed
		o.mu.Unlock()
		if len(open) == 0 {
			return out
		}
		select {
		case <-changed:
		case <-timer.C:
			sort.Strings(open)
			t.Fatalf("no outcome event after %v for %v", timeout, open)
		}
	}
}

// snapshot returns every outcome event seen so far.
func (o *outcomes) snapshot() []event.NoticeOutcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.all)
}

func strs(keys []subscription.NoticeKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.String()
	}
	return out
}
