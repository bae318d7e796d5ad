// Package metrics holds the Prometheus metrics of renewals on a registry of
// its own (never the global one, so tests and several servers in one process
// do not collide), and serves them on /metrics.
//
// Labels carry milestones, outcomes and results only: never a subscription
// id, a name or an address, so the series stay few and hold no personal data.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"renewals/pkg/importer"
	"renewals/pkg/subscription"
)

// Metrics are the service's metrics. Create them with New; the zero value is
// not usable. Every method is safe for concurrent use.
type Metrics struct {
	// Registry holds every metric below plus the Go and process collectors.
	Registry *prometheus.Registry

	due        *prometheus.CounterVec
	outcomes   *prometheus.CounterVec
	sendTime   prometheus.Histogram
	passTime   prometheus.Histogram
	passErrors prometheus.Counter
	lastPass   prometheus.Gauge
	importRows *prometheus.CounterVec
}

// New registers the metrics on a fresh registry. The notice counters are
// pre-set to zero for each milestone in ms and each outcome, so that a
// dashboard sees a series before the first notice.
func New(ms subscription.Milestones) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		due: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "renewals_notices_due_total",
			Help: "Due notices a scheduler pass published, by milestone (repeats dropped by the stream not counted).",
		}, []string{"milestone"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "renewals_notices_total",
			Help: "Notices that reached a final outcome (sent, skipped, failed, undeliverable), by outcome and milestone.",
		}, []string{"outcome", "milestone"}),
		sendTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "renewals_notice_send_seconds",
			Help:    "Time the SMTP server (or the outbox) took to take one notice, for sends that got an answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		passTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "renewals_scheduler_pass_duration_seconds",
			Help:    "Duration of scheduler passes that published (dry runs not counted).",
			Buckets: prometheus.ExponentialBuckets(.01, 4, 10),
		}),
		passErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "renewals_scheduler_pass_failures_total",
			Help: "Scheduler passes that failed.",
		}),
		lastPass: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "renewals_scheduler_last_success_timestamp_seconds",
			Help: "Unix time at which the last successful scheduler pass (not a dry run) ended; 0 before the first.",
		}),
		importRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "renewals_import_rows_total",
			Help: "Imported subscription rows, by result: created, updated, unchanged or rejected.",
		}, []string{"result"}),
	}
	m.Registry.MustRegister(m.due, m.outcomes, m.sendTime, m.passTime, m.passErrors, m.lastPass, m.importRows,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, ms := range ms {
		l := strconv.Itoa(ms)
		m.due.WithLabelValues(l)
		for _, o := range []subscription.Outcome{subscription.OutcomeSent, subscription.OutcomeSkipped, subscription.OutcomeFailed, subscription.OutcomeUndeliverable} {
			m.outcomes.WithLabelValues(string(o), l)
		}
	}
	for _, r := range []string{"created", "updated", "unchanged", "rejected"} {
		m.importRows.WithLabelValues(r)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format. A metric
// that fails to collect (NATS unreachable) is left out, not the whole page.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, ErrorHandling: promhttp.ContinueOnError})
}

// Due counts one published due notice of milestone ms.
func (m *Metrics) Due(ms int) { m.due.WithLabelValues(strconv.Itoa(ms)).Inc() }

// Outcome counts a notice's final outcome; it matches the notifier's Observe
// hook. A non-zero sendTime (an SMTP exchange or outbox write happened) is
// observed in the send-latency histogram.
func (m *Metrics) Outcome(o subscription.Outcome, milestone int, sendTime time.Duration) {
	m.outcomes.WithLabelValues(string(o), strconv.Itoa(milestone)).Inc()
	if sendTime > 0 {
		m.sendTime.Observe(sendTime.Seconds())
	}
}

// Pass records a scheduler pass that ended at end: its duration, and on
// success the time of the last success. Dry runs are ignored.
func (m *Metrics) Pass(took time.Duration, dryRun bool, err error, end time.Time) {
	if dryRun {
		return
	}
	if err != nil {
		m.passErrors.Inc()
		return
	}
	m.passTime.Observe(took.Seconds())
	m.lastPass.Set(float64(end.UnixNano()) / 1e9)
}

// Import counts the rows of one import report by result.
func (m *Metrics) Import(r importer.Report) {
	m.importRows.WithLabelValues("created").Add(float64(r.Created))
	m.importRows.WithLabelValues("updated").Add(float64(r.Updated))
	m.importRows.WithLabelValues("unchanged").Add(float64(r.Unchanged))
	m.importRows.WithLabelValues("rejected").Add(float64(r.Rejected))
}

// WatchConsumer adds gauges read, on every scrape, from the info of the
// durable consumer named durable on stream: the messages still to deliver,
// those delivered but unacknowledged, and those redelivered. While the
// consumer does not exist (no notifier has started yet) the gauges are
// absent; while NATS is unreachable the scrape reports the error.
func (m *Metrics) WatchConsumer(js jetstream.JetStream, stream, durable string) {
	m.Registry.MustRegister(&consumerCollector{js: js, stream: stream, durable: durable})
}

var (
	descPending = prometheus.NewDesc("renewals_notifier_consumer_pending",
		"Due notices in the stream not yet delivered to a notifier.", []string{"consumer"}, nil)
	descAckPending = prometheus.NewDesc("renewals_notifier_consumer_ack_pending",
		"Due notices delivered to a notifier and not yet acknowledged.", []string{"consumer"}, nil)
	descRedelivered = prometheus.NewDesc("renewals_notifier_consumer_redelivered",
		"Due notices delivered more than once and not yet acknowledged.", []string{"consumer"}, nil)
)

type consumerCollector struct {
	js              jetstream.JetStream
	stream, durable string
}

// Describe sends the gauges' descriptions.
func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPending
	ch <- descAckPending
	ch <- descRedelivered
}

// Collect reads the consumer's info, once per scrape.
func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cons, err := c.js.Consumer(ctx, c.stream, c.durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPending, err)
		return
	}
	info, err := cons.Info(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPending, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(info.NumPending), c.durable)
	ch <- prometheus.MustNewConstMetric(descAckPending, prometheus.GaugeValue, float64(info.NumAckPending), c.durable)
	ch <- prometheus.MustNewConstMetric(descRedelivered, prometheus.GaugeValue, float64(info.NumRedelivered), c.durable)
}
