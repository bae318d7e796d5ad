package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/event"
	"renewals/pkg/mailer"
	"renewals/pkg/natsbus"
	"renewals/pkg/redisstore"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/e2e"
	"renewals/templates"
)

// Tuning of the notifier under benchmark: SMTP connections and notices
// handled at once.
const (
	benchSMTPWorkers     = 8
	benchNotifierWorkers = 256
)

// BenchmarkNotifierThroughput sends 100,000 due notices end to end: one
// scheduler pass (through the API) publishes them to JetStream, and the
// notifier claims each in a Redis ledger, re-reads the subscription, renders,
// sends it over SMTP into Postfix's smtp-sink, confirms and publishes the
// outcome. The clock runs from the start of the pass to the 100,000th sent
// outcome event. Then smtp-source sends 100,000 messages of the same size
// over 8 reused sessions into the same sink, timed by the wall clock around
// the command, and the ratio of the two rates is reported.
func BenchmarkNotifierThroughput(b *testing.B) {
	const n = 100_000
	sinkAddr, sinkPid := testenv.SMTPSink(b)
	nc, natsURL := benchNATS(b)
	rs := testenv.StartRedis(b)
	redisURL := rs.URL
	asOf := subscription.MustDate("2031-01-01")
	size := loadDue(b, redisURL, 0, n, asOf)

	outcomes := watchOutcomes(b, nc, n)
	s := e2e.Start(b, benchOptions(natsURL, redisURL, sinkAddr))

	b.ResetTimer()
	cpu0, redis0, sink0 := testenv.SelfCPU(), testenv.ProcessCPU(rs.Pid()), testenv.ProcessCPU(sinkPid)
	start := time.Now()
	res := s.CLI(b, "run", "--as-of", asOf.String())
	passDone := time.Since(start)
	if res.Code != 0 {
		b.Fatalf("run --as-of %s: exit %d: %s", asOf, res.Code, res.Stderr)
	}
	outcomes.wait(b, 10*time.Minute)
	elapsed := time.Since(start)
	cpu, redisCPU, sinkCPU := testenv.SelfCPU()-cpu0, testenv.ProcessCPU(rs.Pid())-redis0, testenv.ProcessCPU(sinkPid)-sink0
	b.StopTimer()
	if got := outcomes.count(subscription.OutcomeSent); got != n {
		b.Fatalf("sent %d notices, want %d (outcomes: %v)", got, n, outcomes.counts())
	}
	rate := float64(n) / elapsed.Seconds()
	load, _ := os.ReadFile("/proc/loadavg")

	sink1 := testenv.ProcessCPU(sinkPid)
	sourceTook := runSMTPSource(b, sinkAddr, n, size)
	sourceRate := float64(n) / sourceTook.Seconds()
	sourceSinkCPU := testenv.ProcessCPU(sinkPid) - sink1

	b.ReportMetric(rate, "emails/s")
	b.ReportMetric(sourceRate, "smtp-source-msgs/s")
	b.ReportMetric(rate/sourceRate, "ratio")
	b.ReportMetric(passDone.Seconds(), "pass-s")
	b.ReportMetric(float64(size), "email-bytes")
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/email")
	b.ReportMetric(float64(redisCPU.Microseconds())/n, "redis-cpu-µs/email")
	b.ReportMetric(float64(sinkCPU.Microseconds())/n, "sink-cpu-µs/email")
	b.Logf("CPU an email: test process (notifier, API, scheduler pass, NATS server) %.0fµs, redis-server %.0fµs, smtp-sink %.0fµs (%.0fµs a message from smtp-source); load average at the end: %s",
		float64(cpu.Microseconds())/n, float64(redisCPU.Microseconds())/n, float64(sinkCPU.Microseconds())/n,
		float64(sourceSinkCPU.Microseconds())/n, strings.TrimSpace(string(load)))
	b.Logf("%d notices in %v (%.0f emails/s; the pass published them in %v); smtp-source -s 8 -d -m %d -l %d: %v (%.0f msgs/s); ratio %.2f",
		n, elapsed.Round(time.Millisecond), rate, passDone.Round(time.Millisecond),
		n, size, sourceTook.Round(time.Millisecond), sourceRate, rate/sourceRate)
}

// BenchmarkNotifierLatency publishes due events straight into JetStream at a
// steady 1,000 a second for 10 seconds and reports, per notice, the time from
// just before its publish to the notifier's record of SMTP acceptance: the
// outcome's time, which the notifier takes right after the server's 250 reply
// to the end of DATA (smtp-sink itself cannot timestamp). Also reported: the
// time until the outcome event reached a subscriber (confirm and publish done).
func BenchmarkNotifierLatency(b *testing.B) {
	const (
		perSecond = 1000
		seconds   = 10
		n         = perSecond * seconds
		tick      = 10 * time.Millisecond
		perTick   = perSecond / int(time.Second/tick)
	)
	sinkAddr, _ := testenv.SMTPSink(b)
	nc, natsURL := benchNATS(b)
	redisURL := testenv.StartRedis(b).URL
	asOf := subscription.MustDate("2031-01-01")
	loadDue(b, redisURL, 0, n, asOf)

	outcomes := watchOutcomes(b, nc, n)
	e2e.Start(b, benchOptions(natsURL, redisURL, sinkAddr))
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()

	published := make(map[string]time.Time, n)
	b.ResetTimer()
	pubStart := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	for i := 0; i < n; {
		<-t.C
		for range perTick {
			key := subscription.NoticeKey{SubscriptionID: benchID(i), EndDate: asOf.AddDays(30), Milestone: 30}
			ev, err := event.New(event.SubjectDue(30), key.String(), time.Now(), event.NoticeDue{
				NoticeKey: key, SubscriptionID: key.SubscriptionID, EndDate: key.EndDate,
				Milestone: 30, DaysLeft: 30, AsOf: asOf,
			})
			if err != nil {
				b.Fatal(err)
			}
			published[key.String()] = time.Now()
			if _, err := natsbus.Publish(ctx, js, event.SubjectDue(30), ev, key.String()); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	publishing := time.Since(pubStart)
	outcomes.wait(b, 2*time.Minute)
	b.StopTimer()
	if got := outcomes.count(subscription.OutcomeSent); got != n {
		b.Fatalf("sent %d notices, want %d (outcomes: %v)", got, n, outcomes.counts())
	}
	var accepted, observed []time.Duration
	for key, o := range outcomes.byKey() {
		p, ok := published[key]
		if !ok {
			b.Fatalf("outcome for unpublished notice %s", key)
		}
		accepted = append(accepted, o.at.Sub(p))
		observed = append(observed, o.received.Sub(p))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(quantile(accepted, 0.50)), "p50-accept-ms")
	b.ReportMetric(ms(quantile(accepted, 0.99)), "p99-accept-ms")
	b.ReportMetric(ms(quantile(accepted, 1)), "max-accept-ms")
	b.ReportMetric(ms(quantile(observed, 0.99)), "p99-outcome-ms")
	b.ReportMetric(float64(n)/publishing.Seconds(), "published/s")
	b.Logf("%d notices at %d/s (%.0f/s achieved): publish -> SMTP accepted p50 %.1fms p99 %.1fms max %.1fms; publish -> outcome event received p99 %.1fms",
		n, perSecond, float64(n)/publishing.Seconds(), ms(quantile(accepted, 0.5)), ms(quantile(accepted, 0.99)), ms(quantile(accepted, 1)), ms(quantile(observed, 0.99)))
}

func quantile(ds []time.Duration, q float64) time.Duration {
	slices.Sort(ds)
	if len(ds) == 0 {
		return 0
	}
	return ds[min(int(q*float64(len(ds))), len(ds)-1)]
}

func benchOptions(natsURL, redisURL, sinkAddr string) e2e.Options {
	return e2e.Options{
		Env: map[string]string{
			"RENEWALS_NATS_URL":  natsURL,
			"RENEWALS_REDIS_URL": redisURL,
			"RENEWALS_SMTP_URL":  fmt.Sprintf("smtp://%s?tls=none&workers=%d", sinkAddr, benchSMTPWorkers),
		},
		Args: []string{"--target", "notifier,api", "--workers", strconv.Itoa(benchNotifierWorkers)},
	}
}

func benchNATS(b *testing.B) (*nats.Conn, string) {
	srv := testenv.NATS(b)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return nc, srv.ClientURL()
}

func benchID(i int) string { return fmt.Sprintf("12%010d", i) }

// loadDue stores subscriptions [from, to) ending 30 days after asOf, so the
// 30-day notice of each is due on asOf, and returns the size of one of their
// emails as an SMTP server receives it.
func loadDue(b *testing.B, redisURL string, from, to int, asOf subscription.Date) int {
	b.Helper()
	store, _, err := redisstore.Open(context.Background(), redisURL)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	return loadDueInto(b, store, from, to, asOf)
}

// loadDueInto is loadDue into any store.
func loadDueInto(b *testing.B, store subscription.Store, from, to int, asOf subscription.Date) int {
	b.Helper()
	ctx := context.Background()
	seats, used := 25, 20
	var batch []subscription.Subscription
	for i := from; i < to; i++ {
		id := benchID(i)
		batch = append(batch, subscription.Subscription{
			ID: id, EndDate: asOf.AddDays(30), CustomerAccount: "ACC" + id, CustomerName: "Customer " + id,
			Product: "Suite Pro", Seats: &seats, SeatsAssigned: &used, AccessModel: subscription.SingleUser,
			Term: "P1Y", Status: subscription.StatusActive, Locale: "en-GB",
			ContractManager: subscription.Contact{Name: "Contract Manager " + id, Email: "cm" + id + "@example.com", Phone: "+44 20 7946 0000"},
			PrimaryAdmin:    subscription.Contact{Name: "Primary Admin " + id, Email: "pa" + id + "@example.com"},
		})
		if len(batch) == 1000 || i == to-1 {
			if _, err := store.Upsert(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	sub, err := store.Get(ctx, benchID(from))
	if err != nil {
		b.Fatal(err)
	}
	r, err := render.New(templates.FS, render.Reseller{})
	if err != nil {
		b.Fatal(err)
	}
	key := subscription.NoticeKey{SubscriptionID: sub.ID, EndDate: sub.EndDate, Milestone: 30}
	email, err := r.Render(sub, subscription.Notice{Key: key, DaysLeft: 30})
	if err != nil {
		b.Fatal(err)
	}
	raw, err := mailer.Compose("renewals@localhost", mailer.Message{
		Key: key, To: sub.ContractManager.Email, ToName: sub.ContractManager.Name,
		Subject: email.Subject, Text: email.Text, HTML: email.HTML,
	}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return len(raw)
}

// runSMTPSource sends n messages of size bytes over 8 parallel sessions, each
// reusing its connection (-d), into addr and returns the wall-clock time.
func runSMTPSource(b *testing.B, addr string, n, size int) time.Duration {
	b.Helper()
	path, err := exec.LookPath("smtp-source")
	if err != nil {
		b.Skip("smtp-source is not installed: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix")
	}
	cmd := exec.Command(path, "-s", "8", "-d", "-m", strconv.Itoa(n), "-l", strconv.Itoa(size),
		"-f", "renewals@localhost", "-t", "cm@example.com", addr)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("smtp-source: %v\n%s", err, out)
	}
	return took
}

// outcomeWatch counts outcome events seen on core NATS, one per notice key.
type outcomeWatch struct {
	mu   sync.Mutex
	want int
	seen map[string]outcomeSeen
	by   map[subscription.Outcome]int
	done chan struct{}
}

type outcomeSeen struct {
	outcome  subscription.Outcome
	at       time.Time // the outcome's time, from the event
	received time.Time // when this subscriber got the event
}

func watchOutcomes(b *testing.B, nc *nats.Conn, want int) *outcomeWatch {
	b.Helper()
	w := &outcomeWatch{want: want, seen: make(map[string]outcomeSeen, want), by: map[subscription.Outcome]int{}, done: make(chan struct{})}
	for _, o := range []subscription.Outcome{subscription.OutcomeSent, subscription.OutcomeSkipped, subscription.OutcomeFailed, subscription.OutcomeUndeliverable} {
		sub, err := nc.Subscribe(event.OutcomeSubject(o), func(m *nats.Msg) {
			received := time.Now()
			// The envelope says all the watch needs: the CloudEvents subject
			// is the notice key, the NATS subject the outcome. Leaving the
			// data undecoded keeps the watch's CPU off the measurement.
			ev, err := event.Decode(m.Data, nil)
			if err != nil {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			key := ev.Subject
			if _, dup := w.seen[key]; dup {
				return
			}
			w.seen[key] = outcomeSeen{o, ev.Time, received}
			w.by[o]++
			if len(w.seen) == w.want {
				close(w.done)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		b.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	return w
}

func (w *outcomeWatch) wait(b *testing.B, timeout time.Duration) {
	b.Helper()
	select {
	case <-w.done:
	case <-time.After(timeout):
		b.Fatalf("only %d of %d outcomes within %v: %v", len(w.byKey()), w.want, timeout, w.counts())
	}
}

func (w *outcomeWatch) count(o subscription.Outcome) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.by[o]
}

func (w *outcomeWatch) counts() map[subscription.Outcome]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[subscription.Outcome]int{}
	for k, v := range w.by {
		out[k] = v
	}
	return out
}

func (w *outcomeWatch) byKey() map[string]outcomeSeen {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]outcomeSeen, len(w.seen))
	for k, v := range w.seen {
		out[k] = v
	}
	return out
}
