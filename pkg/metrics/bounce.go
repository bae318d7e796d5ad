package metrics

import "github.com/prometheus/client_golang/prometheus"

// BounceKinds are the kinds of returned mail the bounce counter is labelled
// with, each present from the start (at 0).
var BounceKinds = []string{"hard", "soft", "auto-reply", "delivered", "unreadable"}

// Bounces registers renewals_bounces_total on m's registry and returns the
// function that counts one returned message of a kind.
func (m *Metrics) Bounces() func(kind string) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "renewals_bounces_total",
		Help: "Mail that came back to the bounce addresses, by kind: hard (the notice bounced), soft (delayed), auto-reply, delivered (a success notice) or unreadable.",
	}, []string{"kind"})
	for _, k := range BounceKinds {
		c.WithLabelValues(k)
	}
	m.Registry.MustRegister(c)
	return func(kind string) { c.WithLabelValues(kind).Inc() }
}
