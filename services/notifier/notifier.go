// Package notifier consumes due notices and emails each one to the
// subscription's contract manager, exactly once as far as SMTP allows.
//
// The protocol per notice, keyed by the notice key: claim it in the ledger
// with a random token and a lease; re-read the subscription and revalidate;
// render; send; confirm with a compare-and-set on the token; publish the
// outcome event; acknowledge the message. A failed send releases the claim
// and the message is redelivered later; nothing is marked sent before the
// send succeeded. A crash anywhere leaves the message unacknowledged, so it
// is redelivered; the ledger then says whether it was sent.
//
// The protocol is per notice; the round trips are not: the notices of one
// pull are claimed in one ledger call and their subscriptions read in one
// store call, confirms that fall due together go in one ledger call, and
// outcome events are published asynchronously, each notice waiting for its
// own acknowledgement. Each notice's outcome is still its own.
package notifier

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"renewals/pkg/event"
	"renewals/pkg/mailer"
	"renewals/pkg/natsbus"
	"renewals/pkg/render"
	"renewals/pkg/subscription"
)

// Notifier handles due notices. Its fields are set once by the caller.
type Notifier struct {
	JS         jetstream.JetStream
	Store      subscription.Store
	Ledger     subscription.Ledger
	Sender     mailer.Sender
	Renderer   *render.Renderer
	Milestones subscription.Milestones
	Location   *time.Location
	Now        func() time.Time
	Log        *zap.Logger
	Consumer   ConsumerConfig
	// Workers is how many notices are handled at once.
	Workers int
	// Drain is how long, once Run's context ends, the sends already under
	// way may take to finish; then they are aborted (and their notices
	// released for redelivery). Notices not yet started are handed back at
	// once. Zero means DefaultDrain.
	Drain time.Duration
	// Pause, when set, is called at each step of the send protocol with the
	// step's name (after-claim, after-send, after-confirm). Fault tests use
	// it to kill the process at an exact point.
	Pause func(step string)
	// Observe, when set, is told each outcome and its send latency.
	Observe func(o subscription.Outcome, milestone int, sendTime time.Duration)
	// Suppressed, when set, is asked before each send whether the contract
	// manager's address bounced (see services/bounces); a reason makes the
	// notice undeliverable without an SMTP connection.
	Suppressed func(ctx context.Context, sub subscription.Subscription) (reason string, err error)
	// SuppressedMany, when set, is Suppressed for the subscriptions of one
	// pull at once, read right after them (one store call, not one a
	// notice); reasons[i] answers subs[i]. Suppressed answers the notices
	// it did not.
	SuppressedMany func(ctx context.Context, subs []subscription.Subscription) (reasons []string, err error)

	confirms confirmBatch
}

// ConsumerConfig tunes the durable consumer shared by every notifier replica.
type ConsumerConfig struct {
	Durable string
	// AckWait is how long a delivery may go unacknowledged before JetStream
	// redelivers it; InProgress extends it while a slow send runs.
	AckWait time.Duration
	// MaxDeliver bounds deliveries; past it the notice is failed.
	MaxDeliver int
	// BackOff is the redelivery schedule after failed attempts.
	BackOff []time.Duration
	// MaxAckPending bounds unacknowledged notices across all replicas.
	MaxAckPending int
	// Lease is how long a claim protects a notice from other workers; it
	// must outlast AckWait so that a live holder is never overtaken.
	Lease time.Duration
}

// DefaultConsumer is the production tuning.
var DefaultConsumer = ConsumerConfig{
	Durable:       "notifier",
	AckWait:       30 * time.Second,
	MaxDeliver:    10,
	BackOff:       []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute, 15 * time.Minute},
	MaxAckPending: 1024,
	Lease:         45 * time.Second,
}

// EnsureConsumer declares the durable pull consumer on the due subjects.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, c ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, event.StreamName, jetstream.ConsumerConfig{
		Durable:       c.Durable,
		Description:   "renewals notifier: emails due notices to contract managers",
		FilterSubject: event.SubjectDuePrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		BackOff:       ackBackOff(c.AckWait, c.MaxDeliver),
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("declare consumer %s: %w", c.Durable, err)
	}
	return cons, nil
}

// ackBackOff is how long JetStream waits for an acknowledgement before each
// redelivery: AckWait first, then twice, four and eight times as long, so a
// notice whose worker keeps dying (a crash loop, a send that hangs) is
// retried ever more slowly instead of every AckWait. Explicit retries after
// a failed send use ConsumerConfig.BackOff through NakWithDelay instead.
func ackBackOff(ackWait time.Duration, maxDeliver int) []time.Duration {
	out := []time.Duration{ackWait, 2 * ackWait, 4 * ackWait, 8 * ackWait}
	if maxDeliver > 0 && maxDeliver < len(out) {
		out = out[:maxDeliver]
	}
	return out
}

// DefaultDrain is Notifier.Drain when unset.
const DefaultDrain = 10 * time.Second

// fetchWait is how long one pull request waits for notices to arrive.
const fetchWait = 2 * time.Second

// coalesce is how long the puller waits for an eighth of its hands to come
// free while the rest are busy: those busy ones keep the connections going
// meanwhile, and a pull of tens of notices shares its claim, read and
// suppression read among them (on the notifier benchmark, 22 notices a
// batch instead of 9 with a 2 ms wait).
const coalesce = 10 * time.Millisecond

// handBack is how soon a notice handed back at shutdown is delivered again:
// just after this process's last pull request has expired, so that it goes
// to another replica or the next start, never back into that request (where
// it would be handed back again, and again, until its deliveries ran out).
const handBack = fetchWait + 500*time.Millisecond

// Run consumes due notices until ctx ends. On return every notice it took is
// acknowledged, or handed back for redelivery; none is half-recorded. When
// ctx ends, notices that have not started out are handed back (delivered
// again within seconds), and sends under way get up to Drain to finish
// before they are aborted.
//
// Notices are pulled only for free hands: never more than Workers at once,
// nor more than the sender can start within half a claim's lease (see
// mailer.Pacer), so no pulled notice waits in a buffer while its ack wait
// runs. While a notice waits for a connection or a rate token, and while it
// is sent, its delivery and its claim are kept alive (see hold).
func (n *Notifier) Run(ctx context.Context) error {
	cons, err := EnsureConsumer(ctx, n.JS, n.Consumer)
	if err != nil {
		return err
	}
	stopAdvisories, err := n.watchMaxDeliveries(ctx)
	if err != nil {
		return err
	}
	defer stopAdvisories()

	var (
		wg       sync.WaitGroup
		inflight inFlight
		finished = make(chan struct{}, 1)
	)
	// The notices in hand outlive ctx by up to the drain time, so that a
	// send under way finishes and is recorded rather than cut off.
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(cmp.Or(n.Drain, DefaultDrain), abort)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopDrain()
	defer wg.Wait()
	for ctx.Err() == nil {
		limit := n.pullLimit()
		busy := inflight.count()
		want := limit - busy
		if want <= 0 {
			select {
			case <-finished:
			case <-ctx.Done():
			}
			continue
		}
		if busy > 0 && want < max(limit/8, 1) {
			// A few hands free while many are busy: let more come free
			// for a moment, so that one pull request carries a batch, not
			// a notice each (each batch costs a claim, a read and a
			// suppression read in one round trip each).
			t := time.NewTimer(coalesce)
		gathering:
			for want < max(limit/8, 1) {
				select {
				case <-finished:
					want = n.pullLimit() - inflight.count()
				case <-t.C:
					break gathering
				case <-ctx.Done():
					break gathering
				}
			}
			t.Stop()
			// The limit moves with the relay's pace: it may have shrunk.
			if want = n.pullLimit() - inflight.count(); want <= 0 {
				continue
			}
		}
		// Not cut short at shutdown: a pull request the server still holds
		// would deliver into a closed inbox, and those notices would wait
		// out their ack wait; run to its expiry and hand back what comes.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchWait)
		batch, err := cons.Fetch(want, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() != nil {
				break
			}
			n.Log.Warn("pull due notices; trying again", zap.Error(err))
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		// The notices of one pull are handled as a batch: claimed, and
		// their subscriptions read, in one round trip each.
		for open := true; open; {
			var msgs []jetstream.Msg
			msgs, open = gather(batch.Messages(), want)
			var take []jetstream.Msg
			var seqs []uint64
			var delivered []int
			for _, m := range msgs {
				if ctx.Err() != nil {
					// Shutting down: hand it back for another replica.
					_ = m.NakWithDelay(handBack)
					continue
				}
				seq, times, ok := inflight.add(m)
				if !ok {
					// A redelivery of a notice this process still handles (its
					// ack wait ran out meanwhile): the first delivery's outcome
					// stands for both, so this one is dropped, not raced.
					n.Log.Debug("redelivered notice still in hand; dropped", zap.Uint64("stream_seq", seq))
					continue
				}
				take = append(take, m)
				seqs = append(seqs, seq)
				delivered = append(delivered, times)
			}
			if len(take) == 0 {
				continue
			}
			done := func(i int) {
				inflight.remove(seqs[i])
				select {
				case finished <- struct{}{}:
				default:
				}
			}
			wg.Go(func() { n.handleBatch(work, ctx, take, delivered, done, &wg) })
		}
		if err := batch.Error(); err != nil && fctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) {
			n.Log.Warn("pull due notices", zap.Error(err))
		}
		cancel()
	}
	return nil
}

// pullLimit is how many notices may be in hand at once.
func (n *Notifier) pullLimit() int {
	limit := max(n.Workers, 1)
	if p, ok := n.Sender.(mailer.Pacer); ok {
		if c := p.Capacity(n.Consumer.Lease / 2); c > 0 {
			limit = min(limit, c)
		}
	}
	return limit
}

// inFlight is the set of notices in hand, by stream sequence.
type inFlight struct {
	mu   sync.Mutex
	seqs map[uint64]struct{}
}

func (f *inFlight) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seqs)
}

// add records m as in hand, by its stream sequence, and returns how many
// times it was delivered (read from the same metadata); it reports false
// when the sequence already is in hand.
func (f *inFlight) add(m jetstream.Msg) (seq uint64, delivered int, ok bool) {
	meta, err := m.Metadata()
	if err != nil {
		return 0, 1, true // not a JetStream delivery: nothing to match it with
	}
	seq = meta.Sequence.Stream
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.seqs[seq]; ok {
		return seq, 0, false
	}
	if f.seqs == nil {
		f.seqs = map[uint64]struct{}{}
	}
	f.seqs[seq] = struct{}{}
	return seq, int(meta.NumDelivered), true
}

func (f *inFlight) remove(seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.seqs, seq)
}

// gatherWait is how long the puller waits for more notices of one pull
// before it hands those it has over as a batch.
const gatherWait = time.Millisecond

// gather receives the next notices of a pull: at least one (unless the pull
// is over), then those that follow within gatherWait, up to limit. open is
// false once the pull has delivered all it will.
func gather(msgs <-chan jetstream.Msg, limit int) (out []jetstream.Msg, open bool) {
	m, ok := <-msgs
	if !ok {
		return nil, false
	}
	out = append(out, m)
	t := time.NewTimer(gatherWait)
	defer t.Stop()
	for len(out) < limit {
		select {
		case m, ok := <-msgs:
			if !ok {
				return out, false
			}
			out = append(out, m)
		case <-t.C:
			return out, true
		}
	}
	return out, true
}

// notice is one delivery in hand.
type notice struct {
	m         jetstream.Msg
	due       event.NoticeDue
	key       subscription.NoticeKey
	token     string
	delivered int
	log       noticeLog
	// sub and subErr are the subscription as read right after the claim.
	sub    subscription.Subscription
	subErr error
	// suppressed is SuppressedMany's answer for sub, when supRead.
	suppressed string
	supRead    bool
	// published is when the scheduler published the due event.
	published time.Time
	// unsettled says a contract email left a key's outcome to a later
	// delivery of this message, again from now.
	unsettled bool
	again     time.Duration
}

// manyGetter is a store that reads many subscriptions in one round trip.
type manyGetter interface {
	GetMany(ctx context.Context, ids []string) ([]subscription.Subscription, []error)
}

// handleBatch runs the send protocol for the deliveries of one pull: it
// claims them all in one ledger call and reads their subscriptions in one
// store call (where the store can), then sends each on its own goroutine.
// delivered[i] is how many times msgs[i] was delivered, and done(i) is
// called once msgs[i] is finished with. ctx ends when the drain
// time is over; once running ends, a notice that has not started out is
// handed back instead.
func (n *Notifier) handleBatch(ctx, running context.Context, msgs []jetstream.Msg, delivered []int, done func(int), wg *sync.WaitGroup) {
	ns := make([]*notice, 0, len(msgs))
	idx := make([]int, 0, len(msgs))
	for i, m := range msgs {
		x := &notice{m: m, delivered: delivered[i], token: newToken()}
		ev, err := event.Decode(m.Data(), &x.due)
		if err != nil {
			n.Log.Error("poison due message terminated", zap.String("subject", m.Subject()), zap.Error(err))
			n.emitPoison(ctx, m, err)
			_ = m.Term()
			done(i)
			continue
		}
		x.key, x.published = x.due.NoticeKey, ev.Time
		x.log = noticeLog{n.Log, zap.Stringer("notice_key", x.key)}
		if len(x.due.ContractKeys) > 1 && !x.due.Resend {
			// One email for the contract's co-termed notices: claimed one
			// by one, in key order (see handleContract).
			wg.Go(func() {
				defer done(i)
				n.handleContract(ctx, running, x)
			})
			continue
		}
		ns = append(ns, x)
		idx = append(idx, i)
	}
	if len(ns) == 0 {
		return
	}
	claims := make([]subscription.Claim, len(ns))
	for i, x := range ns {
		claims[i] = subscription.Claim{Key: x.key, Token: x.token}
	}
	errs := n.Ledger.ClaimMany(ctx, claims, n.Now(), n.Consumer.Lease)
	held, heldIdx := ns[:0], idx[:0]
	for i, x := range ns {
		if errs[i] != nil {
			n.claimRefused(ctx, x, errs[i])
			done(idx[i])
			continue
		}
		held = append(held, x)
		heldIdx = append(heldIdx, idx[i])
	}
	if g, ok := n.Store.(manyGetter); ok && len(held) > 0 {
		ids := make([]string, len(held))
		for i, x := range held {
			ids[i] = x.key.SubscriptionID
		}
		subs, errs := g.GetMany(ctx, ids)
		for i, x := range held {
			x.sub, x.subErr = subs[i], errs[i]
		}
		n.readSuppressions(ctx, held)
	} else {
		for _, x := range held {
			x.subErr = errNotRead
		}
	}
	for i, x := range held {
		wg.Go(func() {
			defer done(heldIdx[i])
			n.pause("after-claim")
			n.handle(ctx, running, x)
		})
	}
}

// readSuppressions asks SuppressedMany about the notices whose subscription
// was read; on an error each asks Suppressed again in attempt.
func (n *Notifier) readSuppressions(ctx context.Context, ns []*notice) {
	if n.SuppressedMany == nil {
		return
	}
	var read []*notice
	var subs []subscription.Subscription
	for _, x := range ns {
		if x.subErr == nil {
			read = append(read, x)
			subs = append(subs, x.sub)
		}
	}
	if len(subs) == 0 {
		return
	}
	reasons, err := n.SuppressedMany(ctx, subs)
	if err != nil {
		return
	}
	for i, x := range read {
		x.suppressed, x.supRead = reasons[i], true
	}
}

// errNotRead marks a notice whose subscription the batch did not read.
var errNotRead = errors.New("subscription not read yet")

// claimRefused settles a delivery whose claim was refused.
func (n *Notifier) claimRefused(ctx context.Context, x *notice, err error) {
	switch {
	case errors.Is(err, subscription.ErrAlreadySent):
		if err := n.reemitSent(ctx, x.key); err != nil {
			x.log.Warn("publish outcome event; retrying later", zap.Error(err))
			_ = x.m.NakWithDelay(n.retryDelay(x.delivered))
			return
		}
		_ = x.m.Ack()
	case errors.Is(err, subscription.ErrClaimed):
		// The holder is alive (and will finish) or died; either way the
		// answer is known once its lease runs out, so never wait longer.
		x.log.Debug("notice claimed by another worker; retrying later")
		_ = x.m.NakWithDelay(min(n.retryDelay(x.delivered), n.Consumer.Lease))
	default:
		x.log.Warn("claim failed; retrying later", zap.Error(err))
		_ = x.m.NakWithDelay(n.retryDelay(x.delivered))
	}
}

// handle runs the rest of the send protocol for one claimed delivery.
func (n *Notifier) handle(ctx, running context.Context, x *notice) {
	m, key, token, log, delivered := x.m, x.key, x.token, x.log, x.delivered
	r := n.attempt(ctx, running, x)
	if r.outcome != "" {
		n.finish(ctx, m, key, token, r, log)
		return
	}
	sendErr := r.retry
	if errors.Is(sendErr, subscription.ErrLostClaim) {
		// The lease ran out before the send could start and another worker
		// holds the notice now: nothing was sent, the ledger decides on the
		// next delivery.
		log.Warn("claim lost before the send started; retrying later")
		_ = m.NakWithDelay(n.Consumer.Lease)
		return
	}
	ambiguous := errors.Is(sendErr, mailer.ErrAmbiguous)
	if err := n.Ledger.Release(context.WithoutCancel(ctx), key, token, ambiguous, reasonOf(sendErr)); err != nil {
		log.Warn("release claim", zap.Error(err))
	}
	if running.Err() != nil {
		// Shutting down: hand the notice back for another replica (or the
		// next start) within seconds, not after a back-off.
		log.Info("notice handed back at shutdown", zap.Bool("ambiguous", ambiguous))
		_ = m.NakWithDelay(handBack)
		return
	}
	if delivered >= n.Consumer.MaxDeliver {
		n.failExhausted(ctx, key, sendErr.Error(), log)
		_ = m.Term()
		return
	}
	log.Warn("send failed; retrying later", zap.Int("delivery", delivered), zap.Bool("ambiguous", ambiguous), zap.Error(sendErr))
	_ = m.NakWithDelay(n.retryDelay(delivered))
}

// result is what an attempt came to: a final outcome with its reason and how
// long the send took, or, with no outcome, the error of a send to retry.
type result struct {
	outcome subscription.Outcome
	reason  string
	took    time.Duration
	retry   error
}

// attempt revalidates, renders and sends.
func (n *Notifier) attempt(ctx, running context.Context, x *notice) result {
	m, key, token, due := x.m, x.key, x.token, x.due
	sub, err := x.sub, x.subErr
	if errors.Is(err, errNotRead) {
		sub, err = n.Store.Get(ctx, key.SubscriptionID)
	}
	if errors.Is(err, subscription.ErrNotFound) {
		return result{outcome: subscription.OutcomeSkipped, reason: "subscription erased or unknown"}
	}
	if err != nil {
		return result{retry: fmt.Errorf("read subscription: %w", err)}
	}
	if reason, skip := n.revalidate(sub, key, due); skip {
		return result{outcome: subscription.OutcomeSkipped, reason: reason}
	}
	to := sub.ContractManager.Email
	if to == "" {
		return result{outcome: subscription.OutcomeUndeliverable, reason: "no contract manager email"}
	}
	if a, err := mail.ParseAddress(to); err != nil || a.Address != to {
		return result{outcome: subscription.OutcomeUndeliverable, reason: "contract manager email is not a valid address"}
	}
	if x.supRead {
		if x.suppressed != "" {
			return result{outcome: subscription.OutcomeUndeliverable, reason: x.suppressed}
		}
	} else if n.Suppressed != nil {
		reason, err := n.Suppressed(ctx, sub)
		if err != nil {
			return result{retry: fmt.Errorf("read suppression list: %w", err)}
		}
		if reason != "" {
			return result{outcome: subscription.OutcomeUndeliverable, reason: reason}
		}
	}
	days := n.daysLeft(sub, due)
	email, err := n.Renderer.Render(sub, subscription.Notice{Key: key, DaysLeft: days})
	if err != nil {
		return result{outcome: subscription.OutcomeFailed, reason: "template error: " + err.Error()}
	}
	h := n.hold(ctx, m, token, key)
	start := n.Now()
	err = n.Sender.Send(ctx, mailer.Message{
		Key: key, To: to, ToName: sub.ContractManager.Name,
		Subject: email.Subject, Text: email.Text, HTML: email.HTML,
		// Checked and marked when the notice's connection takes it, at
		// most one message ahead of its transaction: a claim lost while
		// the notice waited for a connection stops the send. Once
		// shutdown began, a notice that has not started out goes back.
		Begin: func() error {
			if err := running.Err(); err != nil {
				return fmt.Errorf("shutting down: %w", err)
			}
			return n.Ledger.Begin(ctx, key, token, n.Now(), n.Consumer.Lease)
		},
	})
	took := n.Now().Sub(start)
	h.stop()
	switch {
	case err == nil:
		n.pause("after-send")
		return result{outcome: subscription.OutcomeSent, took: took}
	case errors.Is(err, mailer.ErrPermanent):
		return result{outcome: subscription.OutcomeFailed, reason: reasonOf(err), took: took}
	default:
		return result{retry: err, took: took}
	}
}

// revalidate checks the notice against the subscription as it is now: a
// renewal, cancellation or renewal in progress since the pass skips it.
func (n *Notifier) revalidate(sub subscription.Subscription, key subscription.NoticeKey, due event.NoticeDue) (string, bool) {
	switch {
	case sub.EndDate != key.EndDate:
		return "renewed: the subscription has a new end date", true
	case sub.Status == subscription.StatusCancelled:
		return "subscription cancelled", true
	case sub.Status == subscription.StatusRenewalInProgress:
		return "renewal in progress", true
	}
	days := n.daysLeft(sub, due)
	if days < 0 && key.Milestone > 0 {
		return "end date passed before the notice could be sent", true
	}
	stage, ok := n.Milestones.Stage(days)
	if ok && stage < key.Milestone && !due.Resend {
		return fmt.Sprintf("superseded by the %d-day notice", stage), true
	}
	if key.Milestone < 0 && (!ok || stage != key.Milestone) && !due.Resend {
		return "the post-expiry notice's days are over", true
	}
	return "", false
}

// daysLeft reckons days left now, or on the pass's as-of date when the pass
// simulated one, in the subscription's zone.
func (n *Notifier) daysLeft(sub subscription.Subscription, due event.NoticeDue) int {
	if !due.AsOf.IsZero() {
		return due.AsOf.DaysUntil(sub.EndDate)
	}
	return sub.DaysLeft(n.Now(), n.Location)
}

// finish confirms a final outcome, publishes its event and acknowledges.
func (n *Notifier) finish(ctx context.Context, m jetstream.Msg, key subscription.NoticeKey, token string, r result, log noticeLog) {
	if again, ok := n.settle(ctx, m, key, token, r, log); !ok {
		_ = m.NakWithDelay(again)
		return
	}
	if r.outcome == subscription.OutcomeFailed {
		_ = m.Term()
		return
	}
	_ = m.Ack()
}

// settle confirms a final outcome and publishes its event. It reports
// whether both are done; if not, the message is to be redelivered after
// again, and the ledger decides then.
func (n *Notifier) settle(ctx context.Context, m jetstream.Msg, key subscription.NoticeKey, token string, r result, log noticeLog) (again time.Duration, ok bool) {
	stored, err := n.confirm(ctx, m, key, token, entryFor(key, r, n.Now()), log)
	if err != nil {
		if errors.Is(err, subscription.ErrLostClaim) {
			// Another worker took the notice over after our lease ran out;
			// it flagged the entry ambiguous and owns the outcome now. The
			// message is not acknowledged: that would end the other
			// worker's delivery of it too; the ledger decides on the next.
			log.Warn("claim lost before confirm", zap.String("outcome", string(r.outcome)))
			return n.Consumer.Lease, false
		}
		log.Warn("confirm failed; retrying later", zap.Error(err))
		if r.outcome == subscription.OutcomeSent {
			// The email went but the ledger stayed unreachable: keep the
			// claim so the retry finds it held until the lease runs out and
			// takes it over as ambiguous.
			return n.Consumer.Lease, false
		}
		_ = n.Ledger.Release(ctx, key, token, false, "confirm failed: "+err.Error())
		return n.retryDelay(1), false
	}
	return n.announce(ctx, stored, r, log)
}

// entryFor is the ledger entry of key's outcome r at now.
func entryFor(key subscription.NoticeKey, r result, now time.Time) subscription.Entry {
	e := subscription.Entry{Key: key, Outcome: r.outcome, Reason: r.reason, At: now}
	if r.outcome == subscription.OutcomeSent {
		e.Role = subscription.RoleContractManager
	}
	return e
}

// announce publishes the outcome event of a confirmed entry, counts it and
// logs it; see settle for what it returns.
func (n *Notifier) announce(ctx context.Context, entry subscription.Entry, r result, log noticeLog) (again time.Duration, ok bool) {
	n.pause("after-confirm")
	// The event carries the entry as stored: its attempts, and the
	// ambiguous flag a takeover or an earlier attempt may have set.
	emitErr := n.emit(ctx, entry)
	if n.Observe != nil {
		n.Observe(r.outcome, entry.Key.Milestone, r.took)
	}
	if r.outcome == subscription.OutcomeSent || r.outcome == subscription.OutcomeSkipped {
		log.Info("notice "+string(r.outcome), zap.String("reason", r.reason), zap.Bool("ambiguous", entry.Ambiguous))
	} else {
		log.Warn("notice "+string(r.outcome), zap.String("reason", r.reason))
	}
	if emitErr != nil {
		// The ledger holds the outcome, the stream not yet: redeliver, so
		// that the event is published (a sent notice is re-emitted from the
		// ledger; any other outcome is worked out again).
		log.Warn("publish outcome event; retrying later", zap.Error(emitErr))
		return n.retryDelay(1), false
	}
	return 0, true
}

// confirmRetries bounds how long confirm keeps trying: long enough to ride
// out a ledger restart, short enough not to hold a worker for good.
const confirmRetries = 40

// confirm records the outcome under the claim. The compare-and-set is safe to
// repeat, so a ledger that is briefly unreachable (a Redis restart, a NATS
// leader change) is retried with back-off while the message is kept in
// progress: giving up after a sent email would let the lease lapse and the
// next worker send it again.
func (n *Notifier) confirm(ctx context.Context, m jetstream.Msg, key subscription.NoticeKey, token string, e subscription.Entry, log noticeLog) (subscription.Entry, error) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var stored subscription.Entry
		var err error
		if attempt == 1 {
			stored, err = n.confirms.confirm(ctx, n.Ledger, subscription.Confirmation{Key: key, Token: token, Entry: e})
		} else {
			stored, err = n.Ledger.Confirm(ctx, key, token, e)
		}
		if err == nil || errors.Is(err, subscription.ErrLostClaim) || attempt >= confirmRetries {
			return stored, err
		}
		log.Warn("confirm failed; trying again", zap.Int("attempt", attempt), zap.Error(err))
		_ = m.InProgress()
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return subscription.Entry{}, err
		}
		wait = min(wait*2, max(n.Consumer.AckWait/3, 50*time.Millisecond), time.Second)
	}
}

// emitWait bounds the wait for JetStream to store an outcome event, as a
// synchronous publish would.
const emitWait = 5 * time.Second

// emit publishes the outcome event of a ledger entry and waits until the
// stream has it. It publishes asynchronously, so that the events of all the
// notices in hand are on the wire together and their acknowledgements come
// back together; each notice still waits for its own. Its Nats-Msg-Id makes
// a repeat (after a crash between confirm and ack) a no-op in the stream.
func (n *Notifier) emit(ctx context.Context, e subscription.Entry) error {
	subject := event.OutcomeSubject(e.Outcome)
	key := e.Key.String()
	msgID := key + ":" + string(e.Outcome) + ":" + strconv.Itoa(e.Attempts)
	f, err := natsbus.EmitAsync(n.JS, subject, key, e.At, event.NoticeOutcome{
		NoticeKey: e.Key, SubscriptionID: e.Key.SubscriptionID, EndDate: e.Key.EndDate,
		Milestone: e.Key.Milestone, Outcome: e.Outcome, Reason: e.Reason, Role: e.Role,
		Attempts: e.Attempts, Ambiguous: e.Ambiguous,
	}, msgID)
	if err != nil {
		return err
	}
	t := time.NewTimer(emitWait)
	defer t.Stop()
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return fmt.Errorf("publish %s: %w", subject, err)
	case <-t.C:
		return fmt.Errorf("publish %s: no acknowledgement within %v", subject, emitWait)
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", subject, ctx.Err())
	}
}

// confirmBatch gathers the confirms that notices ask for at about the same
// time into one Ledger.ConfirmMany: while one batch is on its way, the next
// collects. No timer: a confirm alone goes at once.
type confirmBatch struct {
	mu      sync.Mutex
	pending []confirmReq
	busy    bool
}

type confirmReq struct {
	c    subscription.Confirmation
	done chan confirmRes
}

type confirmRes struct {
	e   subscription.Entry
	err error
}

// confirm is l.Confirm of c, batched with the confirms asked for meanwhile.
// ctx is the notifier's: every caller passes the same.
func (b *confirmBatch) confirm(ctx context.Context, l subscription.Ledger, c subscription.Confirmation) (subscription.Entry, error) {
	req := confirmReq{c: c, done: make(chan confirmRes, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, req)
	lead := !b.busy
	b.busy = true
	b.mu.Unlock()
	if lead {
		go b.run(ctx, l)
	}
	r := <-req.done
	return r.e, r.err
}

func (b *confirmBatch) run(ctx context.Context, l subscription.Ledger) {
	for {
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		if len(batch) == 0 {
			b.busy = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		cs := make([]subscription.Confirmation, len(batch))
		for i, r := range batch {
			cs[i] = r.c
		}
		entries, errs := l.ConfirmMany(ctx, cs)
		for i, r := range batch {
			r.done <- confirmRes{entries[i], errs[i]}
		}
	}
}

// reemitSent publishes the sent event again for a notice the ledger holds as
// sent: a crash after confirm may have kept the first from the stream.
func (n *Notifier) reemitSent(ctx context.Context, key subscription.NoticeKey) error {
	e, err := n.Ledger.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read ledger entry: %w", err)
	}
	return n.emit(ctx, e)
}

// failExhausted records a notice whose retries ran out as failed.
func (n *Notifier) failExhausted(ctx context.Context, key subscription.NoticeKey, cause string, log noticeLog) {
	token := newToken()
	for attempt := 1; ; attempt++ {
		err := n.Ledger.Claim(ctx, key, token, n.Now(), n.Consumer.Lease)
		if err == nil {
			break
		}
		if errors.Is(err, subscription.ErrAlreadySent) {
			return
		}
		if attempt >= 5 {
			log.Warn("record exhausted notice", zap.Error(err))
			return
		}
		// Claimed: no delivery is left, so the holder is the last worker
		// that had it, hung or dead; its lease decides. Any other error:
		// the ledger may be restarting.
		wait := n.Consumer.Lease
		if !errors.Is(err, subscription.ErrClaimed) {
			wait = n.retryDelay(attempt)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
	e := subscription.Entry{Key: key, Outcome: subscription.OutcomeFailed, Reason: "retries exhausted: " + cause, At: n.Now()}
	e, err := n.Ledger.Confirm(ctx, key, token, e)
	if err != nil {
		log.Warn("record exhausted notice", zap.Error(err))
		return
	}
	if err := n.emit(ctx, e); err != nil {
		log.Warn("publish outcome event", zap.Error(err))
	}
	if n.Observe != nil {
		n.Observe(subscription.OutcomeFailed, key.Milestone, 0)
	}
	log.Warn("notice failed: retries exhausted")
}

// emitPoison publishes a failed event for a due message that cannot be read.
func (n *Notifier) emitPoison(ctx context.Context, m jetstream.Msg, cause error) {
	meta, _ := m.Metadata()
	subject := m.Subject()
	if meta != nil {
		subject = fmt.Sprintf("stream sequence %d", meta.Sequence.Stream)
	}
	// No notice key is known: event.NoticeOutcome would write its zero key
	// as "::0", which no reader can decode, so the key is left out.
	_ = natsbus.Emit(ctx, n.JS, event.SubjectFailed, subject, n.Now(), poisonOutcome{
		Outcome: subscription.OutcomeFailed, Reason: "unreadable due message: " + cause.Error(),
	})
}

// poisonOutcome is event.NoticeOutcome without the notice key, for a due
// message that could not be read.
type poisonOutcome struct {
	Outcome subscription.Outcome `json:"outcome"`
	Reason  string               `json:"reason"`
}

func (n *Notifier) retryDelay(delivered int) time.Duration {
	b := n.Consumer.BackOff
	if len(b) == 0 {
		return time.Second
	}
	return b[min(max(delivered-1, 0), len(b)-1)]
}

func (n *Notifier) pause(step string) {
	if n.Pause != nil {
		n.Pause(step)
	}
}

// holder keeps a notice alive while it waits for a connection or a rate
// token and while it is sent: every AckWait/3 it tells JetStream the message
// is in progress (so it is not redelivered) and renews the claim in the
// ledger (so no other worker takes it over), however long the wait. A
// timer, not a goroutine: most sends are done long before the first tick.
type holder struct {
	n     *Notifier
	ctx   context.Context
	m     jetstream.Msg
	keys  []subscription.NoticeKey
	token string
	every time.Duration

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// hold starts keeping m and token's claims on keys alive until the returned
// holder is stopped.
func (n *Notifier) hold(ctx context.Context, m jetstream.Msg, token string, keys ...subscription.NoticeKey) *holder {
	h := &holder{n: n, ctx: ctx, m: m, keys: keys, token: token, every: n.Consumer.AckWait / 3}
	if h.every <= 0 {
		h.stopped = true
		return h
	}
	h.mu.Lock() // the first tick waits until t is set
	defer h.mu.Unlock()
	h.t = time.AfterFunc(h.every, h.tick)
	return h
}

func (h *holder) tick() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	_ = h.m.InProgress()
	for _, k := range h.keys {
		if err := h.n.Ledger.Renew(h.ctx, k, h.token, h.n.Now(), h.n.Consumer.Lease); err != nil {
			h.n.Log.Warn("renew claim", zap.Stringer("notice_key", k), zap.Error(err))
		}
	}
	h.t.Reset(h.every)
}

// stop ends the keep-alive; it is safe to call more than once.
func (h *holder) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	if h.t != nil {
		h.t.Stop()
	}
}

// noticeLog writes log lines about one notice, each with its key: what
// Logger.With would do, without copying the logger for every notice.
type noticeLog struct {
	l   *zap.Logger
	key zap.Field
}

func (nl noticeLog) log(level zapcore.Level, msg string, fields []zap.Field) {
	if ce := nl.l.Check(level, msg); ce != nil {
		ce.Write(append([]zap.Field{nl.key}, fields...)...)
	}
}

func (nl noticeLog) Debug(msg string, fields ...zap.Field) { nl.log(zap.DebugLevel, msg, fields) }
func (nl noticeLog) Info(msg string, fields ...zap.Field)  { nl.log(zap.InfoLevel, msg, fields) }
func (nl noticeLog) Warn(msg string, fields ...zap.Field)  { nl.log(zap.WarnLevel, msg, fields) }

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reasonOf is the SMTP server's reply for the call list, e.g. "550 5.1.1
// mailbox unavailable"; it never holds the recipient's address.
func reasonOf(err error) string {
	var de *mailer.DeliveryError
	if errors.As(err, &de) && de.Reply != "" {
		return de.Reply
	}
	return err.Error()
}
