// Package kvstore keeps subscriptions and the sent-ledger in the JetStream
// key-value buckets of the (embedded or external) NATS server, so that a
// single-binary deployment needs no Redis.
//
// What it declares:
//
//	bucket renewals_subscriptions   key <id>: the record (shred.Record JSON, personal part sealed)
//	bucket renewals_ends            key d.<end ordinal>.<id>: the end-date index, empty values
//	bucket renewals_ledger          key <id>.<end date>.<milestone>: one ledger entry (JSON)
//	stream RENEWALS_KEYS            subject renewals_keys.<id>: the subscription's data key
//	stream RENEWALS_SUPPRESS        subject renewals_suppress.<address hash>.<id>: a bounced address (bounce.go)
//
// The data keys live in a stream of their own because a KV bucket denies
// message deletion and leaves replaced or purged values in its block files;
// RENEWALS_KEYS allows deletes, and Erase removes each key with
// SecureDeleteMsg, which overwrites the bytes on disk. The sealed records that
// old revisions leave behind in the subscriptions bucket are then noise.
package kvstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// Names of what the store declares.
const (
	SubscriptionsBucket = "renewals_subscriptions"
	EndsBucket          = "renewals_ends"
	LedgerBucket        = "renewals_ledger"
	KeysStream          = "RENEWALS_KEYS"
	KeysSubjectPrefix   = "renewals_keys."
)

const (
	parallel  = 32 // requests in flight per call
	daysPerLS = 16 // end dates per index listing
	readChunk = 512
)

// Store is the JetStream subscription.Store.
type Store struct {
	js         jetstream.JetStream
	subs, ends jetstream.KeyValue
	keys       jetstream.Stream
	lazy       lazyBuckets // calls and renewal facts (calls.go)
	// suppress holds the suppression list (bounce.go).
	suppress jetstream.Stream
}

var (
	_ subscription.Store  = (*Store)(nil)
	_ subscription.Ledger = (*Ledger)(nil)
)

// New declares (or updates) the buckets and the data-key stream on js and
// returns the store and the ledger. Use natsbus.Bus.JS for js; the caller
// keeps the connection and closes it.
func New(ctx context.Context, js jetstream.JetStream) (*Store, *Ledger, error) {
	kv := func(name, desc string) (jetstream.KeyValue, error) {
		b, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, History: 1, Storage: jetstream.FileStorage,
		})
		if err != nil {
			return nil, fmt.Errorf("declare key-value bucket %s: %w", name, err)
		}
		return b, nil
	}
	subs, err := kv(SubscriptionsBucket, "renewals: subscriptions, personal fields sealed")
	if err != nil {
		return nil, nil, err
	}
	ends, err := kv(EndsBucket, "renewals: end-date index, d.<ordinal>.<id>")
	if err != nil {
		return nil, nil, err
	}
	ledger, err := kv(LedgerBucket, "renewals: the sent-ledger, one entry per notice key")
	if err != nil {
		return nil, nil, err
	}
	keys, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              KeysStream,
		Description:       "renewals: per-subscription data keys; erased with secure delete",
		Subjects:          []string{KeysSubjectPrefix + "*"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: -1, // never replaced: a replaced message is deleted, not overwritten
		DenyDelete:        false,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("declare stream %s: %w", KeysStream, err)
	}
	suppress, err := suppressions(ctx, js)
	if err != nil {
		return nil, nil, err
	}
	return &Store{js: js, subs: subs, ends: ends, keys: keys, suppress: suppress}, &Ledger{kv: ledger, js: js}, nil
}

func endKey(ord int64, id string) string { return "d." + strconv.FormatInt(ord, 10) + "." + id }

// healthKey is the key Ping writes in a bucket: '=' is in no subscription
// id, so it is no subscription's record and no ledger entry, and List's
// filters never match it.
const healthKey = "=health"

// Ping reports whether the subscriptions bucket accepts a write, by
// writing healthKey: a stream that answers reads but takes no writes (no
// quorum, a full disk, sealed) cannot store an import.
func (s *Store) Ping(ctx context.Context) error { return ping(ctx, s.subs) }

func ping(ctx context.Context, kv jetstream.KeyValue) error {
	if _, err := kv.Put(ctx, healthKey, []byte("1")); err != nil {
		return fmt.Errorf("write to key-value bucket %s: %w", kv.Bucket(), err)
	}
	return nil
}

// dataKey returns the subscription's data key, or nil when it has none.
func (s *Store) dataKey(ctx context.Context, id string) ([]byte, error) {
	m, err := s.keys.GetLastMsgForSubject(ctx, KeysSubjectPrefix+id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read data key of %s: %w", id, err)
	}
	return m.Data, nil
}

// createDataKey stores a new data key for id unless one exists, and returns
// the one stored; created says whether it is new.
func (s *Store) createDataKey(ctx context.Context, id string) (key []byte, created bool, err error) {
	k, err := shred.NewKey()
	if err != nil {
		return nil, false, err
	}
	_, err = s.js.Publish(ctx, KeysSubjectPrefix+id, k, jetstream.WithExpectLastSequencePerSubject(0))
	if err == nil {
		return k, true, nil
	}
	if isConflict(err) {
		k, err := s.dataKey(ctx, id)
		if err == nil && k == nil {
			err = fmt.Errorf("data key of %s vanished while being created", id)
		}
		return k, false, err
	}
	return nil, false, fmt.Errorf("store data key of %s: %w", id, err)
}

type row struct {
	i   int
	sub subscription.Subscription
}

// Upsert writes subs, up to 32 subscriptions at a time in parallel. Rows of
// one id are written in their order, each against the state the earlier
// left. Each record is written with compare-and-set on its revision, so a
// concurrent writer makes a row retry, never lose an update.
func (s *Store) Upsert(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	groups := map[string][]row{}
	var order []string
	for i, x := range subs {
		if err := subscription.ValidID(x.ID); err != nil {
			return nil, fmt.Errorf("upsert subscriptions: %w", err)
		}
		if _, ok := groups[x.ID]; !ok {
			order = append(order, x.ID)
		}
		groups[x.ID] = append(groups[x.ID], row{i, x})
	}
	out := make([]subscription.UpsertResult, len(subs))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(parallel, len(order)) {
		wg.Go(func() {
			for id := range work {
				if err := s.upsertID(ctx, groups[id], out); err != nil {
					cancel(err)
				}
			}
		})
	}
	for _, id := range order {
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("upsert subscriptions: %w", err)
	}
	return out, nil
}

// upsertID writes the rows of one id in order.
func (s *Store) upsertID(ctx context.Context, rows []row, out []subscription.UpsertResult) error {
	id := rows[0].sub.ID
	key, err := s.dataKey(ctx, id)
	if err != nil {
		return err
	}
	fresh := false
	if key == nil {
		if key, fresh, err = s.createDataKey(ctx, id); err != nil {
			return err
		}
	}
	for _, r := range rows {
		res, err := s.upsertOne(ctx, key, fresh, r.sub)
		if err != nil {
			return err
		}
		fresh = false
		out[r.i] = res
	}
	return nil
}

// isConflict reports a failed compare-and-set: a wrong last sequence
// (10071, or 10164 on replicated streams).
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// current reads the stored record of id: nil with revision 0 when absent.
func (s *Store) current(ctx context.Context, id string) (*shred.Record, uint64, error) {
	e, err := s.subs.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read subscription %s: %w", id, err)
	}
	r, err := shred.UnmarshalRecord(e.Value())
	if err != nil {
		return nil, e.Revision(), fmt.Errorf("read subscription %s: %w", id, err)
	}
	return &r, e.Revision(), nil
}

// upsertOne writes one row. fresh says the data key was just created, so
// any record still stored belongs to an erased past and the row is new.
func (s *Store) upsertOne(ctx context.Context, key []byte, fresh bool, x subscription.Subscription) (subscription.UpsertResult, error) {
	for range 20 {
		old, rev, err := s.current(ctx, x.ID)
		if err != nil && rev == 0 {
			return subscription.UpsertResult{}, err
		}
		var keep *subscription.SeatUsage
		if old != nil && !fresh {
			if keep, err = shred.Usage(*old); err != nil {
				return subscription.UpsertResult{}, fmt.Errorf("read subscription %s: %w", x.ID, err)
			}
		}
		rec, err := shred.SealSubscription(key, subscription.KeepUsage(x, keep))
		if err != nil {
			return subscription.UpsertResult{}, err
		}
		val, err := rec.Marshal()
		if err != nil {
			return subscription.UpsertResult{}, err
		}
		res := subscription.UpsertResult{Change: subscription.Created}
		switch {
		case old == nil || fresh:
		case shred.SameData(*old, rec):
			return subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: subscription.DateFromOrdinal(old.End)}, nil
		default:
			res = subscription.UpsertResult{Change: subscription.Updated, PreviousEndDate: subscription.DateFromOrdinal(old.End)}
		}
		// The index entry goes in before the record, so that a crash between
		// the two leaves an entry too many (EndingBetween checks each against
		// its record), never a record the index cannot find.
		if old == nil || old.End != rec.End || fresh {
			if _, err := s.ends.Put(ctx, endKey(rec.End, x.ID), nil); err != nil {
				return res, fmt.Errorf("index subscription %s: %w", x.ID, err)
			}
		}
		if rev == 0 {
			_, err = s.subs.Create(ctx, x.ID, val)
		} else {
			_, err = s.subs.Update(ctx, x.ID, val, rev)
		}
		if isConflict(err) {
			continue // another writer came between: read again
		}
		if err != nil {
			return res, fmt.Errorf("write subscription %s: %w", x.ID, err)
		}
		if old != nil && old.End != rec.End {
			if err := s.ends.Delete(ctx, endKey(old.End, x.ID)); err != nil {
				return res, fmt.Errorf("unindex subscription %s: %w", x.ID, err)
			}
		}
		return res, nil
	}
	return subscription.UpsertResult{}, fmt.Errorf("write subscription %s: other writers kept changing it; try again", x.ID)
}

// Get returns the subscription with its personal data opened, or an error
// wrapping subscription.ErrNotFound. A record whose data key is gone (an
// erasure cut short) counts as erased.
func (s *Store) Get(ctx context.Context, id string) (subscription.Subscription, error) {
	x, ok, err := s.read(ctx, id)
	if err != nil {
		return x, fmt.Errorf("get subscription %s: %w", id, err)
	}
	if !ok {
		return x, fmt.Errorf("get subscription %s: %w", id, subscription.ErrNotFound)
	}
	return x, nil
}

// read returns the subscription, or ok false when it (or its key) is absent.
func (s *Store) read(ctx context.Context, id string) (subscription.Subscription, bool, error) {
	key, err := s.dataKey(ctx, id)
	if err != nil || key == nil {
		return subscription.Subscription{}, false, err
	}
	rec, _, err := s.current(ctx, id)
	if err != nil || rec == nil {
		return subscription.Subscription{}, false, err
	}
	x, err := shred.OpenSubscription(key, *rec)
	return x, err == nil, err
}

// EndingBetween lists the end-date index for [from, to], sixteen days per
// listing (one filter subject per day, so only those keys are read), then
// reads those subscriptions, up to 32 at a time, and calls fn in order of end
// date, then id. Index entries whose record has moved on or gone are skipped.
func (s *Store) EndingBetween(ctx context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error {
	lo, hi := from.Ordinal(), to.Ordinal()
	for d := lo; d <= hi; d += daysPerLS {
		var filters []string
		for o := d; o <= min(d+daysPerLS-1, hi); o++ {
			filters = append(filters, "d."+strconv.FormatInt(o, 10)+".*")
		}
		lister, err := s.ends.ListKeysFiltered(ctx, filters...)
		if err != nil {
			return fmt.Errorf("list subscriptions ending %v to %v: %w", from, to, err)
		}
		type ref struct {
			ord int64
			id  string
		}
		var refs []ref
		for k := range lister.Keys() {
			rest, ok := strings.CutPrefix(k, "d.")
			ordS, id, ok2 := strings.Cut(rest, ".")
			ord, err := strconv.ParseInt(ordS, 10, 64)
			if ok && ok2 && err == nil {
				refs = append(refs, ref{ord, id})
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list subscriptions ending %v to %v: %w", from, to, err)
		}
		slices.SortFunc(refs, func(a, b ref) int {
			if a.ord != b.ord {
				return int(a.ord - b.ord)
			}
			return strings.Compare(a.id, b.id)
		})
		refs = slices.Compact(refs)
		for c := 0; c < len(refs); c += readChunk {
			part := refs[c:min(c+readChunk, len(refs))]
			subs := make([]subscription.Subscription, len(part))
			oks := make([]bool, len(part))
			errs := make([]error, len(part))
			next := make(chan int)
			var wg sync.WaitGroup
			for range min(parallel, len(part)) {
				wg.Go(func() {
					for i := range next {
						subs[i], oks[i], errs[i] = s.read(ctx, part[i].id)
					}
				})
			}
			for i := range part {
				next <- i
			}
			close(next)
			wg.Wait()
			for i, r := range part {
				if errs[i] != nil {
					return fmt.Errorf("read subscription %s: %w", r.id, errs[i])
				}
				if !oks[i] || subs[i].EndDate.Ordinal() != r.ord {
					continue // erased or renewed since it was indexed
				}
				if err := fn(subs[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Erase securely deletes every message of the subscription's data-key
// subject (SecureDeleteMsg overwrites it on disk), then purges its record and
// its index entry. It returns an error wrapping subscription.ErrNotFound when
// there was neither a record nor a key. Old revisions of the record stay in
// the bucket's files until compaction, sealed under the key that is gone.
func (s *Store) Erase(ctx context.Context, id string) error {
	if err := subscription.ValidID(id); err != nil {
		return fmt.Errorf("erase subscription: %w", err)
	}
	if err := s.eraseSuppressions(ctx, id); err != nil {
		return err
	}
	found := false
	for {
		m, err := s.keys.GetLastMsgForSubject(ctx, KeysSubjectPrefix+id)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("erase subscription %s: read data key: %w", id, err)
		}
		if err := s.keys.SecureDeleteMsg(ctx, m.Sequence); err != nil {
			return fmt.Errorf("erase subscription %s: delete data key: %w", id, err)
		}
		found = true
	}
	rec, rev, err := s.current(ctx, id)
	if err != nil && rev == 0 {
		return fmt.Errorf("erase subscription %s: %w", id, err)
	}
	if err := s.eraseCalls(ctx, id); err != nil {
		return fmt.Errorf("erase subscription %s: %w", id, err)
	}
	if rec != nil {
		if err := s.ends.Purge(ctx, endKey(rec.End, id)); err != nil {
			return fmt.Errorf("erase subscription %s: unindex: %w", id, err)
		}
	}
	if rev != 0 {
		if err := s.subs.Purge(ctx, id); err != nil {
			return fmt.Errorf("erase subscription %s: purge record: %w", id, err)
		}
		found = true
	}
	if !found {
		return fmt.Errorf("erase subscription %s: %w", id, subscription.ErrNotFound)
	}
	return nil
}
