package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/importer"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetricsCountAndExpose(t *testing.T) {
	m := New(subscription.DefaultMilestones)
	m.Due(45)
	m.Due(45)
	m.Outcome(subscription.OutcomeSent, 45, 30*time.Millisecond)
	m.Outcome(subscription.OutcomeUndeliverable, 90, 0)
	m.Pass(2*time.Second, false, nil, time.Unix(1700000000, 0))
	m.Pass(time.Second, true, nil, time.Unix(1800000000, 0)) // dry run: ignored
	m.Import(importer.Report{Created: 3, Rejected: 1})
	out := scrape(t, m)
	for _, want := range []string{
		`renewals_notices_due_total{milestone="45"} 2`,
		`renewals_notices_due_total{milestone="30"} 0`,
		`renewals_notices_total{milestone="45",outcome="sent"} 1`,
		`renewals_notices_total{milestone="90",outcome="undeliverable"} 1`,
		`renewals_notices_total{milestone="30",outcome="failed"} 0`,
		`renewals_notice_send_seconds_count 1`,
		`renewals_scheduler_pass_duration_seconds_count 1`,
		`renewals_scheduler_last_success_timestamp_seconds 1.7e+09`,
		`renewals_import_rows_total{result="created"} 3`,
		`renewals_import_rows_total{result="rejected"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestConsumerGaugesReadOnScrape(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	m := New(subscription.DefaultMilestones)
	m.WatchConsumer(js, "S", "notifier")
	if out := scrape(t, m); strings.Contains(out, "renewals_notifier_consumer_pending") {
		t.Fatal("consumer gauges reported before the consumer exists")
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "notifier", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, "s.x", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// The server counts a consumer's pending messages a moment after the
	// stream acknowledged them: scrape until it has.
	var out string
	testenv.Eventually(t, 10*time.Second, "the consumer's 3 pending notices on /metrics", func() bool {
		out = scrape(t, m)
		return strings.Contains(out, `renewals_notifier_consumer_pending{consumer="notifier"} 3`)
	})
	for _, want := range []string{
		`renewals_notifier_consumer_pending{consumer="notifier"} 3`,
		`renewals_notifier_consumer_ack_pending{consumer="notifier"} 0`,
		`renewals_notifier_consumer_redelivered{consumer="notifier"} 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, out)
		}
	}
}
