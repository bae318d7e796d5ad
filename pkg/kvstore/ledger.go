package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/subscription"
)

// Ledger is the JetStream subscription.Ledger: one key per notice in the
// renewals_ledger bucket, every change a compare-and-set on the key's
// revision (Create for a first claim, Update with the revision read), retried
// when another writer came between.
//
// A notice's claim, renewals and confirm are one worker's writes in a row,
// so the ledger remembers the state and revision it last wrote for each
// claim it holds and writes the next change against them without reading
// first: a first claim is one Create, and Begin, Renew, Release and Confirm
// one Update each. The compare-and-set still decides: when another writer
// came between, the update is refused, the entry is read and the change
// worked out again.
type Ledger struct {
	kv jetstream.KeyValue
	// js publishes the batched writes of ClaimMany and ConfirmMany
	// asynchronously, straight onto the bucket's subjects.
	js jetstream.JetStream

	mu      sync.Mutex
	written map[string]written // by ledger key, while this process holds the claim
}

// written is what the ledger last wrote for a key.
type written struct {
	st  state
	rev uint64
}

// maxWritten bounds the remembered writes (a claim is forgotten when it ends;
// this only caps what crashes of handlers could leave behind).
const maxWritten = 1 << 16

func (l *Ledger) remembered(k string) (written, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.written[k]
	return w, ok
}

func (l *Ledger) remember(k string, st *state, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == nil || st.Token == "" {
		delete(l.written, k) // no claim held: the next change reads first
		return
	}
	if l.written == nil || len(l.written) >= maxWritten {
		l.written = map[string]written{}
	}
	l.written[k] = written{*st, rev}
}

// state is one ledger entry as stored.
type state struct {
	Outcome      subscription.Outcome `json:"outcome,omitempty"`
	Reason       string               `json:"reason,omitempty"`
	Role         subscription.Role    `json:"role,omitempty"`
	At           time.Time            `json:"at,omitzero"`
	Attempts     int                  `json:"attempts"`
	Ambiguous    bool                 `json:"ambiguous,omitempty"`
	Token        string               `json:"token,omitempty"`
	LeaseUntilMs int64                `json:"lease_until_ms,omitempty"`
	// ConfirmedBy is the token whose Confirm recorded the outcome, so that
	// its repeat (a retry whose reply was lost) is known as such.
	ConfirmedBy string `json:"confirmed_by,omitempty"`
	// Begun is set by Begin: the holder's send may have started.
	Begun bool `json:"begun,omitempty"`
	// Status, History and Resent are the bounce ledger's (see bounce.go).
	Status  string                 `json:"status,omitempty"`
	History []subscription.Attempt `json:"history,omitempty"`
	Resent  []string               `json:"resent,omitempty"`
}

// Ping reports whether the ledger's bucket accepts a write, as Store.Ping.
func (l *Ledger) Ping(ctx context.Context) error {
	_, err := ping(ctx, l.kv)
	return err
}

// ledgerKey encodes a notice key for the bucket: ':' is not allowed in
// keys, so "<id>:<date>:<m>" becomes "<id>.<date>.<m>", which also lets List
// filter on "<id>.>".
func ledgerKey(k subscription.NoticeKey) string {
	return k.SubscriptionID + "." + k.EndDate.String() + "." + strconv.Itoa(k.Milestone)
}

func parseLedgerKey(s string) (subscription.NoticeKey, error) {
	return subscription.ParseNoticeKey(strings.ReplaceAll(s, ".", ":"))
}

// update applies change to the entry of key with compare-and-set, retrying on
// conflict. change gets nil when there is no entry; it returns the new state,
// or an error that update returns as is.
func (l *Ledger) update(ctx context.Context, op string, key subscription.NoticeKey, change func(*state) (*state, error)) error {
	_, err := l.updateState(ctx, op, key, change)
	return err
}

// updateState is update that also returns the state it wrote (nil when
// change wrote none).
func (l *Ledger) updateState(ctx context.Context, op string, key subscription.NoticeKey, change func(*state) (*state, error)) (*state, error) {
	if key.SubscriptionID == "" || key.EndDate.IsZero() || key.Milestone == 0 {
		return nil, fmt.Errorf("%s notice %s: incomplete notice key", op, key)
	}
	k := ledgerKey(key)
	// The first try trusts what this process last wrote; a claim with
	// nothing remembered first tries as the notice's first claim.
	w, trust := l.remembered(k)
	trust = trust || op == "claim"
	for range 100 {
		var cur *state
		var rev uint64
		guessed := trust
		if trust {
			if w.rev != 0 {
				st := w.st
				cur, rev = &st, w.rev
			}
			trust = false
		} else {
			e, err := l.kv.Get(ctx, k)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
			case err != nil:
				return nil, fmt.Errorf("%s notice %s: %w", op, key, err)
			default:
				cur, rev = new(state), e.Revision()
				if err := json.Unmarshal(e.Value(), cur); err != nil {
					return nil, fmt.Errorf("%s notice %s: stored entry: %w", op, key, err)
				}
			}
		}
		next, err := change(cur)
		if guessed && (err != nil || next == nil) {
			continue // decided on a guess: read what is stored, and decide on that
		}
		if err != nil {
			return nil, fmt.Errorf("%s notice %s: %w", op, key, err)
		}
		if next == nil {
			return nil, nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("%s notice %s: %w", op, key, err)
		}
		var newRev uint64
		if rev == 0 {
			newRev, err = l.kv.Create(ctx, k, b)
		} else {
			newRev, err = l.kv.Update(ctx, k, b, rev)
		}
		if isConflict(err) {
			continue
		}
		if err != nil {
			l.remember(k, nil, 0) // the write may or may not have landed
			return nil, fmt.Errorf("%s notice %s: %w", op, key, err)
		}
		l.remember(k, next, newRev)
		return next, nil
	}
	return nil, fmt.Errorf("%s notice %s: too many concurrent writers; try again", op, key)
}

// Claim takes the notice for token until now+lease. It returns an error
// wrapping subscription.ErrAlreadySent when the notice was sent, or
// subscription.ErrClaimed while another token's lease is live (a lease ending
// exactly at now has run out). Claiming again with the same token renews the
// lease without counting an attempt; any other successful claim counts one,
// and one that takes over a lapsed lease whose holder had begun to send (see
// Begin) marks the entry ambiguous.
func (l *Ledger) Claim(ctx context.Context, key subscription.NoticeKey, token string, now time.Time, lease time.Duration) error {
	if token == "" || lease <= 0 {
		return fmt.Errorf("claim notice %s: need a token and a positive lease", key)
	}
	until := now.UnixMilli() + lease.Milliseconds()
	return l.update(ctx, "claim", key, func(cur *state) (*state, error) {
		if cur == nil {
			return &state{Attempts: 1, Token: token, LeaseUntilMs: until}, nil
		}
		if subscription.Final(cur.Outcome) {
			return nil, subscription.ErrAlreadySent
		}
		next := *cur
		next.LeaseUntilMs = until
		switch {
		case cur.Token == token:
			return &next, nil
		case cur.Token != "" && now.UnixMilli() < cur.LeaseUntilMs:
			return nil, subscription.ErrClaimed
		case cur.Token != "":
			// The lapsed holder may have sent if it had begun to.
			next.Ambiguous = next.Ambiguous || cur.Begun
		}
		next.Token, next.Begun = token, false
		next.Attempts++
		return &next, nil
	})
}

// Renew extends token's claim to now+lease. It returns an error wrapping
// subscription.ErrLostClaim when token no longer holds the claim.
func (l *Ledger) Renew(ctx context.Context, key subscription.NoticeKey, token string, now time.Time, lease time.Duration) error {
	return l.renew(ctx, "renew", key, token, now, lease, false)
}

// Begin is Renew that also records that token's send is starting: a later
// takeover of the lapsed claim marks the entry ambiguous, since the email
// may have gone. Release and Confirm clear the mark.
func (l *Ledger) Begin(ctx context.Context, key subscription.NoticeKey, token string, now time.Time, lease time.Duration) error {
	return l.renew(ctx, "begin send of", key, token, now, lease, true)
}

func (l *Ledger) renew(ctx context.Context, op string, key subscription.NoticeKey, token string, now time.Time, lease time.Duration, begin bool) error {
	if token == "" || lease <= 0 {
		return fmt.Errorf("%s notice %s: need a token and a positive lease", op, key)
	}
	until := now.UnixMilli() + lease.Milliseconds()
	return l.update(ctx, op, key, func(cur *state) (*state, error) {
		if cur == nil || cur.Token != token {
			return nil, subscription.ErrLostClaim
		}
		next := *cur
		next.LeaseUntilMs = until
		next.Begun = next.Begun || begin
		return &next, nil
	})
}

// Release ends token's claim without an outcome, so another claim may take
// the notice at once; ambiguous marks the entry for good. It returns an error
// wrapping subscription.ErrLostClaim when token does not hold the claim
// (including when the notice was never claimed).
func (l *Ledger) Release(ctx context.Context, key subscription.NoticeKey, token string, ambiguous bool, reason string) error {
	return l.update(ctx, "release", key, func(cur *state) (*state, error) {
		if cur == nil || token == "" || cur.Token != token {
			return nil, subscription.ErrLostClaim
		}
		next := *cur
		next.Token, next.LeaseUntilMs, next.Begun, next.Reason = "", 0, false, reason
		next.Ambiguous = next.Ambiguous || ambiguous
		return &next, nil
	})
}

// Confirm records e's Outcome, Reason, Role and At under token's claim, ends
// the claim and returns the entry as written. e.Ambiguous marks the entry
// ambiguous; an entry already marked stays so. e.Key and e.Attempts are
// ignored: the ledger keeps them. It returns an error wrapping
// subscription.ErrLostClaim when token does not hold the claim. Repeated by
// the token that confirmed, for the same outcome and before any other claim,
// it writes nothing and returns the entry.
func (l *Ledger) Confirm(ctx context.Context, key subscription.NoticeKey, token string, e subscription.Entry) (subscription.Entry, error) {
	if e.Outcome == "" {
		return subscription.Entry{}, fmt.Errorf("confirm notice %s: no outcome", key)
	}
	var repeated *state
	st, err := l.updateState(ctx, "confirm", key, func(cur *state) (*state, error) {
		next, rep, err := confirmed(cur, token, e)
		if rep {
			repeated = cur
		}
		return next, err
	})
	if err != nil {
		return subscription.Entry{}, err
	}
	if repeated != nil {
		return repeated.entry(key), nil
	}
	return st.entry(key), nil
}

// confirmed is what Confirm makes of cur: the state to write, or, for a
// repeat by the token that confirmed, nothing (repeated), or ErrLostClaim.
func confirmed(cur *state, token string, e subscription.Entry) (next *state, repeated bool, err error) {
	if cur != nil && token != "" && cur.Token == "" && cur.ConfirmedBy == token && cur.Outcome == e.Outcome {
		return nil, true, nil // a repeat: nothing to write
	}
	if cur == nil || token == "" || cur.Token != token {
		return nil, false, subscription.ErrLostClaim
	}
	n := *cur
	n.Token, n.LeaseUntilMs, n.ConfirmedBy, n.Begun = "", 0, token, false
	n.Outcome, n.Reason, n.Role, n.At = e.Outcome, e.Reason, e.Role, e.At
	n.Ambiguous = n.Ambiguous || e.Ambiguous
	return &n, false, nil
}

// write is one compare-and-set of a batch, published asynchronously.
type write struct {
	i   int
	k   string
	st  *state
	ack jetstream.PubAckFuture
}

// publishAll publishes each write's state on its key with compare-and-set on
// rev(w) (0: the key must not exist), all at once, and waits for the
// acknowledgements. done(w, err) is called for each write: with nil once
// the write is stored and remembered, else with why it was not published or
// stored (it may have landed: the caller works it out again on its own).
func (l *Ledger) publishAll(ctx context.Context, ws []write, rev func(write) uint64, done func(write, error)) {
	for j := range ws {
		w := &ws[j]
		b, err := json.Marshal(w.st)
		if err == nil {
			w.ack, err = l.js.PublishMsgAsync(&nats.Msg{Subject: "$KV." + LedgerBucket + "." + w.k, Data: b},
				jetstream.WithExpectLastSequencePerSubject(rev(*w)))
		}
		if err != nil {
			l.remember(w.k, nil, 0)
			done(*w, err)
		}
	}
	for _, w := range ws {
		if w.ack == nil {
			continue
		}
		select {
		case a := <-w.ack.Ok():
			l.remember(w.k, w.st, a.Sequence)
			done(w, nil)
		case err := <-w.ack.Err():
			l.remember(w.k, nil, 0)
			done(w, err)
		case <-ctx.Done():
			l.remember(w.k, nil, 0)
			done(w, ctx.Err())
		}
	}
}

// ClaimMany claims the notices it holds no state for (the usual case: a
// notice's first claim) with one asynchronous Create each, published
// together, and waits for the acknowledgements once; any other claim, and
// one whose Create was refused or went unanswered, is claimed on its own as
// Claim does (which reads the entry and decides).
func (l *Ledger) ClaimMany(ctx context.Context, claims []subscription.Claim, now time.Time, lease time.Duration) []error {
	errs := make([]error, len(claims))
	var ws []write
	var alone []int
	until := now.UnixMilli() + lease.Milliseconds()
	for i, c := range claims {
		if c.Token == "" || lease <= 0 || c.Key.SubscriptionID == "" || c.Key.EndDate.IsZero() || c.Key.Milestone == 0 {
			alone = append(alone, i) // Claim says what is wrong
			continue
		}
		k := ledgerKey(c.Key)
		if _, ok := l.remembered(k); ok {
			alone = append(alone, i)
			continue
		}
		ws = append(ws, write{i: i, k: k, st: &state{Attempts: 1, Token: c.Token, LeaseUntilMs: until}})
	}
	l.publishAll(ctx, ws, func(write) uint64 { return 0 }, func(w write, err error) {
		if err != nil {
			alone = append(alone, w.i)
		}
	})
	for _, i := range alone {
		errs[i] = l.Claim(ctx, claims[i].Key, claims[i].Token, now, lease)
	}
	return errs
}

// ConfirmMany confirms each notice whose claim this process holds and
// remembers with one asynchronous Update against the remembered revision,
// published together, waiting for the acknowledgements once; any other, and
// one whose Update was refused or went unanswered, is confirmed on its own
// as Confirm does (a repeat of a write that landed changes nothing).
func (l *Ledger) ConfirmMany(ctx context.Context, cs []subscription.Confirmation) ([]subscription.Entry, []error) {
	entries, errs := make([]subscription.Entry, len(cs)), make([]error, len(cs))
	var ws []write
	var alone []int
	revs := map[int]uint64{}
	for i, c := range cs {
		k := ledgerKey(c.Key)
		w, ok := l.remembered(k)
		var next *state
		if ok && c.Entry.Outcome != "" && c.Key.SubscriptionID != "" && !c.Key.EndDate.IsZero() && c.Key.Milestone != 0 {
			next, _, _ = confirmed(&w.st, c.Token, c.Entry)
		}
		if next == nil || w.rev == 0 {
			alone = append(alone, i)
			continue
		}
		revs[i] = w.rev
		ws = append(ws, write{i: i, k: k, st: next})
	}
	l.publishAll(ctx, ws, func(w write) uint64 { return revs[w.i] }, func(w write, err error) {
		if err != nil {
			alone = append(alone, w.i)
			return
		}
		entries[w.i] = w.st.entry(cs[w.i].Key)
	})
	for _, i := range alone {
		entries[i], errs[i] = l.Confirm(ctx, cs[i].Key, cs[i].Token, cs[i].Entry)
	}
	return entries, errs
}

// entry is the ledger entry of key that st holds.
func (st *state) entry(key subscription.NoticeKey) subscription.Entry {
	return subscription.Entry{
		Key: key, Outcome: st.Outcome, Reason: st.Reason, Role: st.Role, At: st.At,
		Attempts: st.Attempts, Ambiguous: st.Ambiguous,
		Status: st.Status, History: st.History, Resent: st.Resent,
	}
}

func (l *Ledger) get(ctx context.Context, key subscription.NoticeKey) (subscription.Entry, bool, error) {
	e, err := l.kv.Get(ctx, ledgerKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return subscription.Entry{}, false, nil
	}
	if err != nil {
		return subscription.Entry{}, false, err
	}
	var st state
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return subscription.Entry{}, false, fmt.Errorf("stored entry: %w", err)
	}
	return st.entry(key), true, nil
}

// Get returns the entry for key, or an error wrapping subscription.ErrNotFound
// when the notice was never claimed.
func (l *Ledger) Get(ctx context.Context, key subscription.NoticeKey) (subscription.Entry, error) {
	e, ok, err := l.get(ctx, key)
	if err != nil {
		return e, fmt.Errorf("get notice %s: %w", key, err)
	}
	if !ok {
		return e, fmt.Errorf("get notice %s: %w", key, subscription.ErrNotFound)
	}
	return e, nil
}

// getAll reads the entries of keys, up to 32 at a time; absent ones are
// left out.
func (l *Ledger) getAll(ctx context.Context, keys []subscription.NoticeKey) ([]subscription.Entry, []bool, error) {
	out := make([]subscription.Entry, len(keys))
	oks := make([]bool, len(keys))
	errs := make([]error, len(keys))
	each(len(keys), func(i int) { out[i], oks[i], errs[i] = l.get(ctx, keys[i]) })
	return out, oks, errors.Join(errs...)
}

// Sent reports, for every one of keys, whether it was sent.
func (l *Ledger) Sent(ctx context.Context, keys []subscription.NoticeKey) (map[subscription.NoticeKey]bool, error) {
	entries, oks, err := l.getAll(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read sent notices: %w", err)
	}
	out := make(map[subscription.NoticeKey]bool, len(keys))
	for i, k := range keys {
		out[k] = oks[i] && subscription.Final(entries[i].Outcome)
	}
	return out, nil
}

// List returns every entry of the subscription, ordered by
// subscription.CompareKeys (end date, then milestone as a number), and an
// empty list when it has none.
func (l *Ledger) List(ctx context.Context, subscriptionID string) ([]subscription.Entry, error) {
	if err := subscription.ValidID(subscriptionID); err != nil {
		return nil, fmt.Errorf("list notices: %w", err)
	}
	lister, err := l.kv.ListKeysFiltered(ctx, subscriptionID+".>")
	if err != nil {
		return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
	}
	var keys []subscription.NoticeKey
	for s := range lister.Keys() {
		k, err := parseLedgerKey(s)
		if err != nil {
			return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
		}
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
	}
	slices.SortFunc(keys, subscription.CompareKeys)
	keys = slices.Compact(keys)
	entries, oks, err := l.getAll(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
	}
	var out []subscription.Entry
	for i := range entries {
		if oks[i] {
			out = append(out, entries[i])
		}
	}
	return out, nil
}
