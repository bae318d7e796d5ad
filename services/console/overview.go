package console

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"

	"renewals/pkg/event"
	"renewals/pkg/subscription"
	"renewals/services/scheduler"
)

// --- what needs a person, from the outcome events ---

type recentOutcome struct {
	At        time.Time
	Key       subscription.NoticeKey
	Outcome   subscription.Outcome
	Reason    string
	Ambiguous bool
}

// recentOutcomes keeps the last failed, undeliverable and ambiguous
// outcomes this process has seen on the bus.
type recentOutcomes struct {
	mu    sync.Mutex
	items []recentOutcome
}

const recentMax = 20

func (r *recentOutcomes) add(o recentOutcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append([]recentOutcome{o}, r.items...)
	if len(r.items) > recentMax {
		r.items = r.items[:recentMax]
	}
}

func (r *recentOutcomes) list() []recentOutcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recentOutcome(nil), r.items...)
}

// Watch follows the notice outcomes on nc, for the overview's list of what
// needs a person: failed, undeliverable and ambiguous notices since this
// process started. The events hold no personal data.
func (c *Console) Watch(nc *nats.Conn) (stop func(), err error) {
	outcomes, err := nc.Subscribe("renewals.notice.*", func(m *nats.Msg) {
		// Every outcome outdates the board, but only a failed,
		// undeliverable or ambiguous one is listed: the others, nearly all,
		// are read no further than their outcome and flag.
		var head struct {
			Outcome   subscription.Outcome `json:"outcome"`
			Ambiguous bool                 `json:"ambiguous"`
		}
		if _, err := event.Decode(m.Data, &head); err != nil || head.Outcome == "" {
			return
		}
		c.changed("", false)
		if head.Outcome != subscription.OutcomeFailed && head.Outcome != subscription.OutcomeUndeliverable && !head.Ambiguous {
			return
		}
		var o event.NoticeOutcome
		if ev, err := event.Decode(m.Data, &o); err == nil {
			c.recent.add(recentOutcome{At: ev.Time, Key: o.NoticeKey, Outcome: o.Outcome, Reason: o.Reason, Ambiguous: o.Ambiguous})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("console: follow the notice outcomes: %w", err)
	}
	// Any change to a subscription or to the call list outdates what the
	// console keeps of them (snapshot.go).
	onChange := func(m *nats.Msg) {
		switch m.Subject {
		case event.SubjectErased:
			var e event.SubscriptionErased
			if _, err := event.Decode(m.Data, &e); err == nil {
				c.changed(e.SubscriptionID, true)
				return
			}
			c.changed("", true)
		case event.SubjectUpserted, event.SubjectCalllist:
			c.changed("", false)
		}
	}
	var subs []*nats.Subscription
	for _, subject := range []string{"renewals.subscription.*", "renewals.calllist.*"} {
		sub, err := nc.Subscribe(subject, onChange)
		if err != nil {
			_ = outcomes.Unsubscribe()
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, fmt.Errorf("console: follow the changes: %w", err)
		}
		subs = append(subs, sub)
	}
	// Work the overview's board out now, so that the first view finds it.
	stop = func() {
		_ = outcomes.Unsubscribe()
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	if c.Lister != nil && c.Scheduler != nil {
		go func() {
			ctx, cancel := context.WithTimeout(cmp.Or(c.Context, context.Background()), boardTimeout)
			defer cancel()
			c.currentBoard(ctx)
		}()
	}
	return stop, nil
}

// --- /metrics figures ---

func (c *Console) figures() []figure {
	if c.Metrics == nil {
		return nil
	}
	mfs, err := c.Metrics.Gather()
	if err != nil && len(mfs) == 0 {
		return []figure{{"Metrics", "cannot be read: " + err.Error()}}
	}
	sums := map[string]float64{}
	byLabel := map[string]float64{}
	present := map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			v := value(m)
			sums[name] += v
			present[name] = true
			for _, l := range m.GetLabel() {
				byLabel[name+"/"+l.GetName()+"="+l.GetValue()] += v
			}
		}
	}
	n := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	out := []figure{
		{"Notices due (published)", n(sums["renewals_notices_due_total"])},
		{"Sent", n(byLabel["renewals_notices_total/outcome=sent"])},
		{"Skipped", n(byLabel["renewals_notices_total/outcome=skipped"])},
		{"Failed", n(byLabel["renewals_notices_total/outcome=failed"])},
		{"Undeliverable", n(byLabel["renewals_notices_total/outcome=undeliverable"])},
		{"Rows imported", n(sums["renewals_import_rows_total"] - byLabel["renewals_import_rows_total/result=rejected"])},
		{"Rows rejected", n(byLabel["renewals_import_rows_total/result=rejected"])},
		{"Failed passes", n(sums["renewals_scheduler_pass_failures_total"])},
	}
	if present["renewals_notifier_consumer_pending"] {
		out = append(out, figure{"Waiting for a notifier", n(sums["renewals_notifier_consumer_pending"])},
			figure{"Being sent", n(sums["renewals_notifier_consumer_ack_pending"])})
	}
	if ts := sums["renewals_scheduler_last_success_timestamp_seconds"]; ts > 0 {
		sec, frac := math.Modf(ts)
		out = append(out, figure{"Last successful pass", c.time(time.Unix(int64(sec), int64(frac*1e9)))})
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// --- the forecast chart ---

// forecastChart is the SVG bar chart of the notices of the next days, a
// bar a day stacked by milestone, and its totals for the table beside it.
type forecastChart struct {
	Days       int
	From       subscription.Date
	Bars       []bar
	Legend     []legend
	Ticks      []tick
	Max        int
	Total      int
	Busiest    subscription.Date
	BusiestN   int
	Unreadable string
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type legend struct {
	Milestone int
	Class     string
	Count     int
}

type tick struct {
	X     float64
	Label string
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 900.0, 200.0
)

func (c *Console) forecast(ctx context.Context, from subscription.Date, days int) (forecastChart, error) {
	ms := c.Scheduler.Milestones
	counts := make([]map[int]int, days)
	for i := range counts {
		counts[i] = map[int]int{}
	}
	err := c.Scheduler.ForecastEach(ctx, from, days, func(day subscription.Date, p scheduler.Planned) error {
		counts[from.DaysUntil(day)][p.Key.Milestone]++
		return nil
	})
	ch := forecastChart{Days: days, From: from}
	if err != nil {
		ch.Unreadable = "The forecast cannot be read now: try again in a minute."
		return ch, err
	}
	per := map[int]int{}
	for i, cs := range counts {
		t := 0
		for m, n := range cs {
			t += n
			per[m] += n
		}
		ch.Total += t
		if t > ch.BusiestN {
			ch.BusiestN, ch.Busiest = t, from.AddDays(i)
		}
		ch.Max = max(ch.Max, t)
	}
	class := func(i int) string { return "m" + strconv.Itoa(i%4) }
	for i := len(ms) - 1; i >= 0; i-- {
		ch.Legend = append(ch.Legend, legend{ms[i], class(i), per[ms[i]]})
	}
	for m := range per { // milestones no longer configured, from old notices
		found := false
		for _, x := range ms {
			found = found || x == m
		}
		if !found {
			ch.Legend = append(ch.Legend, legend{m, "mx", per[m]})
		}
	}
	if ch.Max == 0 {
		return ch, nil
	}
	bw := chartW / float64(days)
	scale := (chartH - 20) / float64(ch.Max)
	for i, cs := range counts {
		y := chartH
		for j := len(ms) - 1; j >= 0; j-- {
			n := cs[ms[j]]
			if n == 0 {
				continue
			}
			h := float64(n) * scale
			y -= h
			ch.Bars = append(ch.Bars, bar{X: float64(i) * bw, Y: y, W: math.Max(bw-1, 1), H: h, Class: class(j),
				Title: fmt.Sprintf("%s: %d %d-day %s", c.date(from.AddDays(i)), n, ms[j], subscription.Plural(n, "notice", "notices"))})
		}
	}
	for i := 0; i < days; i += 15 {
		ch.Ticks = append(ch.Ticks, tick{X: float64(i) * bw, Label: c.date(from.AddDays(i))})
	}
	return ch, nil
}
