package api

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/importer"
	"renewals/pkg/subscription"
)

// IngestResult is the reply to a record sent on renewals.ingest.subscription.
type IngestResult struct {
	SubscriptionID string              `json:"subscription_id,omitempty"`
	Change         subscription.Change `json:"change,omitempty"`
	Rejected       bool                `json:"rejected,omitempty"`
	Errors         []FieldReason       `json:"errors,omitempty"`
	Error          string              `json:"error,omitempty"`
}

// ServeIngest answers requests on renewals.ingest.subscription: each carries
// one subscription record (JSON, the import's field names), which is
// validated like an import row and upserted; the reply is its result. Every
// API replica joins one queue group, so each request is handled once.
func ServeIngest(nc *nats.Conn, s *Server) (stop func(), err error) {
	sub, err := nc.QueueSubscribe(event.SubjectIngest, "renewals-ingest", func(m *nats.Msg) {
		res := s.ingest(m.Data)
		b, _ := json.Marshal(res)
		if err := m.Respond(b); err != nil {
			s.Log.Warn("reply to ingest request", zap.Error(err))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", event.SubjectIngest, err)
	}
	return func() { _ = sub.Drain() }, nil
}

func (s *Server) ingest(data []byte) IngestResult {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, ferrs := importer.ValidateJSON(data)
	if len(ferrs) > 0 {
		return IngestResult{SubscriptionID: sub.ID, Rejected: true, Errors: fieldReasons(ferrs)}
	}
	res, err := s.Store.Upsert(ctx, []subscription.Subscription{sub})
	if err != nil {
		return IngestResult{SubscriptionID: sub.ID, Error: "store unavailable, try again: " + err.Error()}
	}
	events := s.upsertEvents(ctx)
	events.add(sub, res[0])
	if err := events.wait(); err != nil {
		return IngestResult{SubscriptionID: sub.ID, Change: res[0].Change, Error: err.Error()}
	}
	return IngestResult{SubscriptionID: sub.ID, Change: res[0].Change}
}
