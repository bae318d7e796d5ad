package calllist

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
)

// Names the target declares.
const (
	// Bucket is the key-value bucket of States, keyed by subscription id.
	Bucket = "renewals_calllist"
	// Durable is the name of the target's durable consumer on RENEWALS.
	Durable = "calllist"
)

// Subjects are the RENEWALS subjects the target follows: the final notice
// outcomes and the subscription changes (not the due notices, nor its own
// calllist.updated events).
var Subjects = []string{
	event.SubjectSent, event.SubjectSkipped, event.SubjectFailed, event.SubjectUndeliverable,
	event.SubjectBounced, "renewals.subscription.>", event.SubjectCallRecorded,
}

// DefaultAckWait is how long an event may go unacknowledged before it is
// redelivered, e.g. after the target crashed while applying it.
const DefaultAckWait = 10 * time.Second

// Target is the calllist target. Its fields are set once by the caller;
// Bucket and Durable default to the package constants (tests run a second
// target beside the first under other names).
type Target struct {
	JS    jetstream.JetStream
	Store subscription.Store
	Rules Rules
	Now   func() time.Time
	Log   *zap.Logger

	Bucket  string
	Durable string
	// Replicas of the bucket on a NATS cluster; 0 means 1.
	Replicas int
	// AckWait defaults to DefaultAckWait.
	AckWait time.Duration
	// AfterApply, when set, is called with the stream sequence of each event
	// once its State is saved and before it is acknowledged. Crash tests use
	// it to stop the target at that exact point.
	AfterApply func(seq uint64)

	kv jetstream.KeyValue
}

// OpenBucket returns the call list bucket named name, creating it when it does
// not exist (with replicas copies on a cluster, 0 meaning 1, and updating an
// existing one to that many); created reports whether it did not exist.
func OpenBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int) (kv jetstream.KeyValue, created bool, err error) {
	_, err = js.KeyValue(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, fmt.Errorf("open key-value bucket %s: %w", name, err)
	}
	created = err != nil
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: "renewals: call list outcome state per subscription (no personal data)",
		History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if err != nil {
		return nil, false, fmt.Errorf("declare key-value bucket %s: %w", name, err)
	}
	return kv, created, nil
}

// Run follows the stream until ctx ends. It returns an error when it cannot
// start, or when the NATS connection is closed under it; nil when ctx ended,
// even during start.
func (t *Target) Run(ctx context.Context) error {
	err := t.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (t *Target) run(ctx context.Context) error {
	t.Bucket = cmp.Or(t.Bucket, Bucket)
	t.Durable = cmp.Or(t.Durable, Durable)
	kv, created, err := OpenBucket(ctx, t.JS, t.Bucket, t.Replicas)
	if err != nil {
		return err
	}
	t.kv = kv
	if created {
		// No state: whatever the consumer had acknowledged is lost, so
		// replay the stream from its first event.
		err := t.JS.DeleteConsumer(ctx, event.StreamName, t.Durable)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("reset consumer %s: %w", t.Durable, err)
		}
		if err == nil {
			t.Log.Info("call list state missing: replaying the stream from the start")
		}
	}
	cons, err := t.JS.CreateOrUpdateConsumer(ctx, event.StreamName, jetstream.ConsumerConfig{
		Durable:        t.Durable,
		Description:    "renewals calllist: notice outcomes and subscription changes into the call list",
		FilterSubjects: Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cmp.Or(t.AckWait, DefaultAckWait),
		// One at a time, in stream order, across every replica: a State's
		// sequence guard then makes redeliveries no-ops.
		MaxAckPending: 1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("declare consumer %s: %w", t.Durable, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return fmt.Errorf("follow the stream for the call list: %w", err)
	}
	go func() {
		<-ctx.Done()
		iter.Stop()
	}()
	for {
		m, err := iter.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			if t.JS.Conn().IsClosed() && ctx.Err() == nil {
				return errors.New("call list: the NATS connection was closed")
			}
			return nil
		}
		if err != nil {
			if t.JS.Conn().IsClosed() {
				return fmt.Errorf("call list: %w", err)
			}
			t.Log.Warn("follow the stream for the call list", zap.Error(err))
			continue
		}
		if err := t.handle(ctx, m); err != nil {
			t.Log.Warn("call list update failed; retrying", zap.String("subject", m.Subject()), zap.Error(err))
			_ = m.NakWithDelay(time.Second)
			continue
		}
		_ = m.Ack()
	}
}

// handle applies one event. A nil error means acknowledge it.
func (t *Target) handle(ctx context.Context, m jetstream.Msg) error {
	meta, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("message metadata: %w", err)
	}
	seq := meta.Sequence.Stream
	var (
		id      string
		outcome *NoticeState
		erased  bool
		hint    *event.SubscriptionUpserted
		call    *CallState
	)
	switch m.Subject() {
	case event.SubjectSent, event.SubjectSkipped, event.SubjectFailed, event.SubjectUndeliverable:
		var d event.NoticeOutcome
		ev, err := event.Decode(m.Data(), &d)
		if err != nil || d.SubscriptionID == "" {
			t.Log.Warn("call list: unreadable or keyless outcome event ignored", zap.Uint64("seq", seq), zap.Error(err))
			return nil
		}
		id = d.SubscriptionID
		outcome = &NoticeState{EndDate: d.EndDate, Milestone: d.Milestone, Outcome: d.Outcome, Reason: d.Reason, At: ev.Time, Seq: seq}
	case event.SubjectBounced:
		var d event.NoticeBounced
		ev, err := event.Decode(m.Data(), &d)
		if err != nil || d.SubscriptionID == "" {
			t.Log.Warn("call list: unreadable or keyless bounce event ignored", zap.Uint64("seq", seq), zap.Error(err))
			return nil
		}
		if d.Kind != "hard" {
			return nil // a delay: the notice may still arrive
		}
		id = d.SubscriptionID
		outcome = &NoticeState{EndDate: d.EndDate, Milestone: d.Milestone, Outcome: subscription.OutcomeBounced, Reason: d.Reason, At: ev.Time, Seq: seq}
	case event.SubjectUpserted:
		var d event.SubscriptionUpserted
		if _, err := event.Decode(m.Data(), &d); err != nil || d.SubscriptionID == "" {
			t.Log.Warn("call list: unreadable upsert event ignored", zap.Uint64("seq", seq), zap.Error(err))
			return nil
		}
		id, hint = d.SubscriptionID, &d
	case event.SubjectCallRecorded:
		var d event.CallRecorded
		ev, err := event.Decode(m.Data(), &d)
		if err != nil || d.SubscriptionID == "" {
			t.Log.Warn("call list: unreadable call event ignored", zap.Uint64("seq", seq), zap.Error(err))
			return nil
		}
		c := callStateOf(d, ev.Time)
		id, call = d.SubscriptionID, &c
	case event.SubjectErased:
		var d event.SubscriptionErased
		if _, err := event.Decode(m.Data(), &d); err != nil || d.SubscriptionID == "" {
			t.Log.Warn("call list: unreadable erase event ignored", zap.Uint64("seq", seq), zap.Error(err))
			return nil
		}
		id, erased = d.SubscriptionID, true
	default:
		return nil
	}
	if subscription.ValidID(id) != nil {
		return nil // not a key the bucket can hold; nothing can list it either
	}

	st, err := t.load(ctx, id)
	if err != nil {
		return err
	}
	if st != nil && seq <= st.Seq {
		return nil // a redelivery of what was applied
	}
	if st == nil && hint != nil && !t.mayList(*hint) {
		return nil // far from its renewal: nothing to keep
	}
	if st == nil {
		st = &State{SubscriptionID: id}
	}
	prev := st.Published
	if outcome != nil {
		st.apply(*outcome)
	}
	if call != nil {
		st.applyCall(*call)
	}
	st.Seq = seq

	now := Published{}
	if !erased {
		sub, err := t.Store.Get(ctx, id)
		switch {
		case errors.Is(err, subscription.ErrNotFound):
			erased = true
		case err != nil:
			return fmt.Errorf("read subscription: %w", err)
		default:
			e, on := t.Rules.Build(sub, st, t.Rules.today(sub, t.Now(), subscription.Date{}))
			now = Published{OnList: on, Reason: e.Reason}
			if !on {
				now.Reason = ""
			}
		}
	}
	if erased {
		now = Published{Reason: "erased"}
	}
	changed := prev == nil && now.OnList || prev != nil && *prev != now
	if changed {
		if err := t.publish(ctx, id, seq, now); err != nil {
			return err
		}
	}
	st.Published = &now
	if err := t.save(ctx, id, st, erased); err != nil {
		return err
	}
	if t.AfterApply != nil {
		t.AfterApply(seq)
	}
	return nil
}

// mayList reports whether an upserted subscription could be on the list
// today, from the event alone, so that a large import of far-off
// subscriptions costs no store reads.
func (t *Target) mayList(d event.SubscriptionUpserted) bool {
	if d.Status != "" && d.Status != subscription.StatusActive {
		return false
	}
	from, to := t.Rules.window(subscription.Today(t.Now(), t.Rules.loc()))
	return !d.EndDate.Before(from) && !d.EndDate.After(to)
}

func (t *Target) load(ctx context.Context, id string) (*State, error) {
	return loadState(ctx, t.kv, id)
}

// loadState reads the State of id; nil when there is none.
func loadState(ctx context.Context, kv jetstream.KeyValue, id string) (*State, error) {
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read call list state %s: %w", id, err)
	}
	var st State
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return nil, fmt.Errorf("decode call list state %s: %w", id, err)
	}
	return &st, nil
}

// save writes st. An erased subscription keeps a State with only the
// sequence and the last published update, so that redeliveries stay no-ops.
func (t *Target) save(ctx context.Context, id string, st *State, erased bool) error {
	if erased {
		st.Notices, st.Calls = nil, nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode call list state %s: %w", id, err)
	}
	if _, err := t.kv.Put(ctx, id, b); err != nil {
		return fmt.Errorf("save call list state %s: %w", id, err)
	}
	return nil
}

// publish emits renewals.calllist.updated: ids and the reason only. Its
// Nats-Msg-Id ties it to the event that caused it, so a redelivery after a
// crash does not publish it twice.
func (t *Target) publish(ctx context.Context, id string, seq uint64, p Published) error {
	ev, err := event.New(event.SubjectCalllist, id, t.Now(), event.CalllistUpdated{
		SubscriptionID: id, OnList: p.OnList, Reason: scrub(p.Reason),
	})
	if err != nil {
		return err
	}
	if _, err := natsbus.Publish(ctx, t.JS, event.SubjectCalllist, ev, "calllist:"+id+":"+strconv.FormatUint(seq, 10)); err != nil {
		return err
	}
	return nil
}
