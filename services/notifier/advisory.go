package notifier

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"renewals/pkg/event"
)

// maxDeliveries is the advisory JetStream raises when a message ran out of
// deliveries without being acknowledged (workers died or timed out on it
// every time). It is the only sign of such a notice, so it becomes a failed
// event and a failed ledger entry that the call list shows.
type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

// watchMaxDeliveries subscribes, in a queue group shared by every replica so
// that one handles each advisory, to the consumer's MAX_DELIVERIES advisory.
func (n *Notifier) watchMaxDeliveries(ctx context.Context) (stop func(), err error) {
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", event.StreamName, n.Consumer.Durable)
	stream, err := n.JS.Stream(ctx, event.StreamName)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", event.StreamName, err)
	}
	sub, err := n.JS.Conn().QueueSubscribe(subject, "renewals-notifier", func(m *nats.Msg) {
		var adv maxDeliveries
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			n.Log.Warn("unreadable max-deliveries advisory", zap.Error(err))
			return
		}
		// Not cut short by shutdown: the advisory comes once, to one replica.
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		raw, err := stream.GetMsg(gctx, adv.StreamSeq)
		if err != nil {
			n.Log.Warn("read exhausted notice", zap.Uint64("stream_seq", adv.StreamSeq), zap.Error(err))
			return
		}
		var due event.NoticeDue
		if _, err := event.Decode(raw.Data, &due); err != nil {
			return // a poison message: terminated and reported where it was read
		}
		// failExhausted may wait out a lease: not on the subscription's
		// goroutine, which every advisory shares.
		go n.failExhausted(ctx, due.NoticeKey, fmt.Sprintf("%d deliveries without an acknowledgement", adv.Deliveries),
			noticeLog{n.Log, zap.Stringer("notice_key", due.NoticeKey)})
	})
	if err != nil {
		return nil, fmt.Errorf("follow max-deliveries advisories: %w", err)
	}
	return func() { _ = sub.Drain() }, nil
}
