// Package kvstore keeps subscriptions and the sent-ledger in the JetStream
// key-value buckets of the (embedded or external) NATS server, so that a
// single-binary deployment needs no Redis.
//
// What it declares:
//
//	bucket renewals_subscriptions   key <id>: the record (shred.Record JSON, personal part sealed,
//	                                and "k": the sequence of its data key in RENEWALS_KEYS)
//	stream RENEWALS_ENDS            subject renewals_ends.<end ordinal>: the end-date index, each
//	                                message the ids (one a line) written together that end that day
//	bucket renewals_ledger          key <id>.<end date>.<milestone>: one ledger entry (JSON)
//	stream RENEWALS_KEYS            subject renewals_keys: the data keys, each message a key and its
//	                                subscription's id, found by sequence
//	stream RENEWALS_SUPPRESS        subject renewals_suppress.<address hash>.<id>: a bounced address (bounce.go)
//
// One subject per subscription, not three: the file store keeps state for
// every subject in memory (about 130 bytes each, more while a block is
// being written), which at a million subscriptions was most of the server's
// memory. The index packs the ids that one write puts on one day into one
// message, and a data key is found by the sequence its record names.
// An index entry whose record has since moved to another day, or gone, is
// skipped when read.
//
// The data keys live in a stream of their own because a KV bucket denies
// message deletion and leaves replaced or purged values in its block files;
// RENEWALS_KEYS allows deletes, and Erase removes the key with
// SecureDeleteMsg, which overwrites the bytes on disk. The sealed records that
// old revisions leave behind in the subscriptions bucket are then noise.
//
// Data written by earlier versions (a renewals_ends bucket with one key per
// entry, data keys on renewals_keys.<id>) is read as it is: New moves the
// index into RENEWALS_ENDS once and deletes the old bucket; a record with no
// "k" keeps its key on renewals_keys.<id>.
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
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/natsbus"
	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// Names of what the store declares.
const (
	SubscriptionsBucket = "renewals_subscriptions"
	LedgerBucket        = "renewals_ledger"
	KeysStream          = "RENEWALS_KEYS"
	// KeysSubject is where data keys are written.
	KeysSubject = "renewals_keys"
	// KeysSubjectPrefix is where earlier versions wrote each data key, on a
	// subject of its own (renewals_keys.<id>); still read and erased.
	KeysSubjectPrefix = "renewals_keys."
	EndsStream        = "RENEWALS_ENDS"
	EndsSubjectPrefix = "renewals_ends."
	// EndsBucket is the end-date index of earlier versions, one key per
	// entry; New moves it into EndsStream.
	EndsBucket = "renewals_ends"
)

const (
	parallel  = 32 // requests in flight per call
	daysPerLS = 16 // end dates per index listing
	readChunk = 512
)

// Options are the store's settings.
type Options struct {
	// Replicas of every stream and bucket (1 on a single server, 3 on a
	// cluster of three or more); 0 means 1.
	Replicas int
}

// Store is the JetStream subscription.Store.
type Store struct {
	js   jetstream.JetStream
	nc   *nats.Conn
	subs jetstream.KeyValue
	// subsInfo is the subscriptions bucket's stream, for its last sequence.
	subsInfo jetstream.Stream
	keys     jetstream.Stream
	ends     jetstream.Stream
	// batch says the server has batched reads and atomic batch writes
	// (nats-server 2.12 or newer; see batch.go).
	batch bool
	lazy  lazyBuckets // calls and renewal facts (calls.go)
	// changing says that most rows of the last batch Upsert wrote were new
	// or changed, so that the next batch skips the reads of unchanged rows
	// (see upsertBatch).
	changing atomic.Bool
	// seen remembers the rows upserted, for re-imports (seen.go).
	seen *seen
	// suppress holds the suppression list (bounce.go).
	suppress jetstream.Stream
	// replicas of the buckets and streams declared later (calls.go).
	replicas int
}

var (
	_ subscription.Store  = (*Store)(nil)
	_ subscription.Ledger = (*Ledger)(nil)
)

// Key-value subjects of the subscriptions bucket.
const (
	subsStream = kvStreamPfx + SubscriptionsBucket
	subsPfx    = kvSubjectsPfx + SubscriptionsBucket + "."
)

// New declares (or updates) the buckets and the streams on js with one
// replica and returns the store and the ledger. Use natsbus.Bus.JS for js;
// the caller keeps the connection and closes it.
func New(ctx context.Context, js jetstream.JetStream) (*Store, *Ledger, error) {
	return NewWith(ctx, js, Options{})
}

// NewWith is New with opts.
func NewWith(ctx context.Context, js jetstream.JetStream, opts Options) (*Store, *Ledger, error) {
	replicas := max(opts.Replicas, 1)
	kv := func(name, desc string) (jetstream.KeyValue, error) {
		b, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: name, Description: desc, History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
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
	ledger, err := kv(LedgerBucket, "renewals: the sent-ledger, one entry per notice key")
	if err != nil {
		return nil, nil, err
	}
	batch := natsbus.Batchable(js.Conn())
	keys, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              KeysStream,
		Description:       "renewals: per-subscription data keys; erased with secure delete",
		Subjects:          []string{KeysSubject, KeysSubjectPrefix + "*"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: -1, // never replaced: a replaced message is deleted, not overwritten
		DenyDelete:        false,
		AllowDirect:       true,
		Replicas:          replicas,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("declare stream %s: %w", KeysStream, err)
	}
	ends, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              EndsStream,
		Description:       "renewals: end-date index, renewals_ends.<ordinal>: ids, one a line",
		Subjects:          []string{EndsSubjectPrefix + "*"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: -1,
		AllowDirect:       true,
		Replicas:          replicas,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("declare stream %s: %w", EndsStream, err)
	}
	suppress, err := suppressions(ctx, js, replicas)
	if err != nil {
		return nil, nil, err
	}
	subsInfo, err := js.Stream(ctx, subsStream)
	if err != nil {
		return nil, nil, fmt.Errorf("open stream %s: %w", subsStream, err)
	}
	s := &Store{js: js, nc: js.Conn(), subs: subs, subsInfo: subsInfo, keys: keys, ends: ends, suppress: suppress, replicas: replicas, seen: newSeen()}
	if batch {
		for _, name := range []string{subsStream, EndsStream, KeysStream} {
			if err := natsbus.EnableAtomic(ctx, js, name); err != nil {
				return nil, nil, fmt.Errorf("allow atomic batches on stream %s: %w", name, err)
			}
		}
		s.batch = true
	}
	if err := s.migrateIndex(ctx); err != nil {
		return nil, nil, err
	}
	return s, &Ledger{kv: ledger, js: js}, nil
}

// healthKey is the key Ping writes in a bucket: '=' is in no subscription
// id, so it is no subscription's record and no ledger entry, and List's
// filters never match it.
const healthKey = "=health"

// Ping reports whether the subscriptions bucket accepts a write, by
// writing healthKey: a stream that answers reads but takes no writes (no
// quorum, a full disk, sealed) cannot store an import.
// Its write is one that the store's memory of rows accounts for (seen.go).
func (s *Store) Ping(ctx context.Context) error {
	seq, err := ping(ctx, s.subs)
	if err == nil {
		s.seen.account(seq)
	}
	return err
}

func ping(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	seq, err := kv.Put(ctx, healthKey, []byte("1"))
	if err != nil {
		return 0, fmt.Errorf("write to key-value bucket %s: %w", kv.Bucket(), err)
	}
	return seq, nil
}

// stored is a record as the bucket holds it: the shared record and the
// sequence of its data key (0: on the subject of its own, as earlier
// versions wrote it).
type stored struct {
	shred.Record
	KeySeq uint64 `json:"k,omitempty"`
}

func (r stored) marshal() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode subscription record: %w", err)
	}
	return b, nil
}

// Stored records are decoded with encoding/json's successor
// (go-json-experiment/json) on every path, the batched reads and the
// single-row ones alike: it reads a record in one pass where encoding/json
// validates it first and then reads it again, and takes about a third of
// the time (BenchmarkDecodeRecord, one run on a shared 2-core machine:
// 1.5 µs against 4.6 µs for a whole record, 1.1 against 3.5 for its
// fingerprint); a re-import decodes every record. Its stricter reading
// (names matched with their case, a repeated name or invalid UTF-8
// refused) cannot turn down a record of ours: every record is written by
// marshal, or in the layout of earlier versions by shred.Record.Marshal,
// both encoding/json's Marshal of a Go struct, so each name is its tag's,
// once, and the text is valid UTF-8 (Marshal writes invalid UTF-8 in a
// string as U+FFFD, and the clear part it embeds is itself the output of
// Marshal). The compact form of earlier versions is not JSON and is read
// by shred.UnmarshalRecord.

// unmarshalFingerprint is unmarshalStored without the sealed part, all
// that an upsert compares: the largest field is left undecoded.
func unmarshalFingerprint(b []byte) (stored, error) {
	if len(b) == 0 || b[0] != '{' {
		return unmarshalStored(b)
	}
	var r struct {
		Digest string         `json:"d"`
		End    int64          `json:"e"`
		Clear  jsontext.Value `json:"s"`
		KeySeq uint64         `json:"k"`
	}
	if err := jsonv2.Unmarshal(b, &r); err != nil {
		return stored{}, fmt.Errorf("decode subscription record: %w", err)
	}
	return stored{Record: shred.Record{Digest: r.Digest, End: r.End, Clear: json.RawMessage(r.Clear)}, KeySeq: r.KeySeq}, nil
}

// unmarshalStored decodes a whole stored record.
func unmarshalStored(b []byte) (stored, error) {
	if len(b) > 0 && b[0] == '{' {
		var r stored
		if err := jsonv2.Unmarshal(b, &r); err != nil {
			return r, fmt.Errorf("decode subscription record: %w", err)
		}
		return r, nil
	}
	r, err := shred.UnmarshalRecord(b) // the compact form of earlier versions
	return stored{Record: r}, err
}

// keyMsg is a data key's message: the key, then the subscription's id, so
// that a key read by sequence is known to be that subscription's.
func keyMsg(key []byte, id string) []byte { return append(slices.Clip(key), id...) }

// openKeyMsg returns the key of a message keyMsg made for id, or nil.
func openKeyMsg(data []byte, id string) []byte {
	if len(data) != shred.KeySize+len(id) || string(data[shred.KeySize:]) != id {
		return nil
	}
	return data[:shred.KeySize:shred.KeySize]
}

// dataKey returns the data key that rec names, or nil when it is gone
// (erased).
func (s *Store) dataKey(ctx context.Context, id string, rec stored) ([]byte, error) {
	if rec.KeySeq == 0 {
		m, err := s.keys.GetLastMsgForSubject(ctx, KeysSubjectPrefix+id)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read data key of %s: %w", id, err)
		}
		return m.Data, nil
	}
	m, err := s.keys.GetMsg(ctx, rec.KeySeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read data key of %s: %w", id, err)
	}
	if m.Subject != KeysSubject {
		return nil, nil
	}
	return openKeyMsg(m.Data, id), nil
}

// keyOf returns the data key of the subscription id's stored record, or
// nil when there is no record or its key is gone (erased).
func (s *Store) keyOf(ctx context.Context, id string) ([]byte, error) {
	rec, _, err := s.current(ctx, id)
	if err != nil || rec == nil {
		return nil, err
	}
	return s.dataKey(ctx, id, *rec)
}

// createDataKey stores a new data key for id and returns it and its
// sequence.
func (s *Store) createDataKey(ctx context.Context, id string) ([]byte, uint64, error) {
	k, err := shred.NewKey()
	if err != nil {
		return nil, 0, err
	}
	ack, err := s.js.Publish(ctx, KeysSubject, keyMsg(k, id))
	if err != nil {
		return nil, 0, fmt.Errorf("store data key of %s: %w", id, err)
	}
	return k, ack.Sequence, nil
}

// dropKey securely deletes a data key that no record came to name (the
// record's write lost to another writer's).
func (s *Store) dropKey(ctx context.Context, seq uint64) {
	_ = s.keys.SecureDeleteMsg(ctx, seq) // at worst a key that seals nothing stays
}

// index appends ids to the index of the end date ord.
func (s *Store) index(ctx context.Context, ord int64, ids ...string) error {
	_, err := s.js.Publish(ctx, EndsSubjectPrefix+strconv.FormatInt(ord, 10), []byte(strings.Join(ids, "\n")))
	return err
}

type row struct {
	i   int
	sub subscription.Subscription
}

// Upsert writes subs. On nats-server 2.12 or newer a batch of distinct ids
// is read in two requests and written in at most three atomic batches (see
// batch.go); otherwise, and when the server refuses a batch, rows go one id
// at a time, up to 32 in parallel. Rows of one id are written in their
// order, each against the state the earlier left. Each record is written with
// compare-and-set on its revision, so a concurrent writer makes a row retry,
// never lose an update.
func (s *Store) Upsert(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	seen := make(map[string]struct{}, len(subs))
	for _, x := range subs {
		if err := subscription.ValidID(x.ID); err != nil {
			return nil, fmt.Errorf("upsert subscriptions: %w", err)
		}
		seen[x.ID] = struct{}{}
	}
	if s.batch && len(subs) > 1 && len(seen) == len(subs) {
		res, err := s.upsertBatch(ctx, subs)
		if err != nil {
			return nil, fmt.Errorf("upsert subscriptions: %w", err)
		}
		return res, nil
	}
	return s.upsertSlow(ctx, subs)
}

// upsertSlow is Upsert one subscription at a time.
func (s *Store) upsertSlow(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	groups := map[string][]row{}
	var order []string
	for i, x := range subs {
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
				for _, r := range groups[id] {
					res, err := s.upsertOne(ctx, r.sub)
					if err != nil {
						cancel(err)
						break
					}
					out[r.i] = res
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
func (s *Store) current(ctx context.Context, id string) (*stored, uint64, error) {
	e, err := s.subs.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read subscription %s: %w", id, err)
	}
	r, err := unmarshalStored(e.Value())
	if err != nil {
		return nil, e.Revision(), fmt.Errorf("read subscription %s: %w", id, err)
	}
	return &r, e.Revision(), nil
}

// upsertOne writes one row: the record with compare-and-set on the
// revision read, under the data key the stored record names, or a new one
// when there is none (a new subscription, or one whose erasure was cut
// short: its record belongs to an erased past and the row is new).
func (s *Store) upsertOne(ctx context.Context, x subscription.Subscription) (subscription.UpsertResult, error) {
	for range 20 {
		old, rev, err := s.current(ctx, x.ID)
		if err != nil && rev == 0 {
			return subscription.UpsertResult{}, err
		}
		var key []byte
		var keySeq uint64
		if old != nil {
			if key, err = s.dataKey(ctx, x.ID, *old); err != nil {
				return subscription.UpsertResult{}, err
			}
			keySeq = old.KeySeq
		}
		created := uint64(0) // the sequence of a key created for this try
		if key == nil {
			old = nil
			if key, keySeq, err = s.createDataKey(ctx, x.ID); err != nil {
				return subscription.UpsertResult{}, err
			}
			created = keySeq
		}
		// A row without seat usage keeps what the stored record has.
		var keep *subscription.SeatUsage
		if old != nil {
			if keep, err = shred.Usage(old.Record); err != nil {
				return subscription.UpsertResult{}, fmt.Errorf("read subscription %s: %w", x.ID, err)
			}
		}
		sealed, err := shred.SealSubscription(key, subscription.KeepUsage(x, keep))
		if err != nil {
			return subscription.UpsertResult{}, err
		}
		rec := stored{Record: sealed, KeySeq: keySeq}
		res := subscription.UpsertResult{Change: subscription.Created}
		switch {
		case old == nil:
		case shred.SameData(old.Record, rec.Record):
			return subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: subscription.DateFromOrdinal(old.End)}, nil
		default:
			res = subscription.UpsertResult{Change: subscription.Updated, PreviousEndDate: subscription.DateFromOrdinal(old.End)}
		}
		val, err := rec.marshal()
		if err != nil {
			return res, err
		}
		// The index entry goes in before the record, so that a crash between
		// the two leaves an entry too many (EndingBetween checks each against
		// its record), never a record the index cannot find.
		if old == nil || old.End != rec.End {
			if err := s.index(ctx, rec.End, x.ID); err != nil {
				return res, fmt.Errorf("index subscription %s: %w", x.ID, err)
			}
		}
		if rev == 0 {
			_, err = s.subs.Create(ctx, x.ID, val)
		} else {
			_, err = s.subs.Update(ctx, x.ID, val, rev)
		}
		if isConflict(err) {
			if created != 0 {
				s.dropKey(ctx, created)
			}
			continue // another writer came between: read again
		}
		if err != nil {
			return res, fmt.Errorf("write subscription %s: %w", x.ID, err)
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

// GetMany reads the subscriptions of ids as Get would, in batches on a
// server that has them: the notifier reads a pull's notices this way.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]subscription.Subscription, []error) {
	errs := make([]error, len(ids))
	subs, oks, rerrs, err := s.readIDs(ctx, ids)
	if subs == nil {
		subs = make([]subscription.Subscription, len(ids))
	}
	for i, id := range ids {
		switch {
		case err != nil:
			errs[i] = fmt.Errorf("get subscription %s: %w", id, err)
		case rerrs[i] != nil:
			errs[i] = fmt.Errorf("get subscription %s: %w", id, rerrs[i])
		case !oks[i]:
			errs[i] = fmt.Errorf("get subscription %s: %w", id, subscription.ErrNotFound)
		}
	}
	return subs, errs
}

// read returns the subscription, or ok false when it (or its key) is absent.
func (s *Store) read(ctx context.Context, id string) (subscription.Subscription, bool, error) {
	rec, _, err := s.current(ctx, id)
	if err != nil || rec == nil {
		return subscription.Subscription{}, false, err
	}
	key, err := s.dataKey(ctx, id, *rec)
	if err != nil || key == nil {
		return subscription.Subscription{}, false, err
	}
	x, err := shred.OpenSubscription(key, rec.Record)
	return x, err == nil, err
}

type ref struct {
	ord int64
	id  string
}

// EndingBetween lists the end-date index for [from, to], sixteen days per
// listing (one filter subject per day, so only those entries are read), then
// reads those subscriptions, 512 at a time, and calls fn in order of end
// date, then id. Index entries whose record has moved on or gone are skipped.
func (s *Store) EndingBetween(ctx context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error {
	lo, hi := from.Ordinal(), to.Ordinal()
	counts, err := s.indexCounts(ctx)
	if err != nil {
		return fmt.Errorf("list subscriptions ending %v to %v: %w", from, to, err)
	}
	for d := lo; d <= hi; d += daysPerLS {
		var filters []string
		total := 0
		for o := d; o <= min(d+daysPerLS-1, hi); o++ {
			subj := EndsSubjectPrefix + strconv.FormatInt(o, 10)
			if n := counts[subj]; n > 0 {
				filters = append(filters, subj)
				total += int(n)
			}
		}
		if total == 0 {
			continue
		}
		refs, err := s.listIndex(ctx, filters, total)
		if err != nil {
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
			ids := make([]string, len(part))
			for i, r := range part {
				ids[i] = r.id
			}
			subs, oks, errs, err := s.readIDs(ctx, ids)
			if err != nil {
				return fmt.Errorf("list subscriptions ending %v to %v: %w", from, to, err)
			}
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

// indexCounts returns the number of index messages per day subject.
func (s *Store) indexCounts(ctx context.Context) (map[string]uint64, error) {
	info, err := s.ends.Info(ctx, jetstream.WithSubjectFilter(EndsSubjectPrefix+"*"))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// listIndex reads the first total index messages on filters (their count
// when indexCounts ran) with a consumer of its own, deleted after: a pass
// lists with several, and a year of passes would otherwise fill the
// server's consumer limit before their inactivity removed them.
func (s *Store) listIndex(ctx context.Context, filters []string, total int) ([]ref, error) {
	c, err := s.ends.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute, Replicas: 1, MemoryStorage: true,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.ends.DeleteConsumer(dctx, c.CachedInfo().Name) // else it goes after a minute idle
	}()
	var refs []ref
	for got := 0; got < total; {
		batch, err := c.Fetch(min(total-got, 1000))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			got++
			ord, err := strconv.ParseInt(strings.TrimPrefix(m.Subject(), EndsSubjectPrefix), 10, 64)
			if err != nil {
				continue
			}
			for id := range strings.SplitSeq(string(m.Data()), "\n") {
				if id != "" {
					refs = append(refs, ref{ord, id})
				}
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

// readIDs reads the subscriptions of ids, in batches on a server that has
// them, else up to 32 at a time.
func (s *Store) readIDs(ctx context.Context, ids []string) ([]subscription.Subscription, []bool, []error, error) {
	if s.batch {
		return s.readMany(ctx, ids)
	}
	errs := make([]error, len(ids))
	subs := make([]subscription.Subscription, len(ids))
	oks := make([]bool, len(ids))
	each(len(ids), func(i int) { subs[i], oks[i], errs[i] = s.read(ctx, ids[i]) })
	return subs, oks, errs, nil
}

// each calls fn for every index below n, up to parallel at once, and
// returns when all have returned: the key-value store answers one request
// a round trip, so many in flight hide its latency.
func each(n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Erase securely deletes the subscription's data key (SecureDeleteMsg
// overwrites it on disk), and any an earlier version kept on the subject of
// its own, then purges its record. It returns an error wrapping
// subscription.ErrNotFound when there was neither a record nor a key. Old
// revisions of the record stay in the bucket's files until compaction,
// sealed under the key that is gone; its index entries stay too, naming a
// record that is no longer there.
func (s *Store) Erase(ctx context.Context, id string) error {
	if err := subscription.ValidID(id); err != nil {
		return fmt.Errorf("erase subscription: %w", err)
	}
	s.seen.drop()
	if err := s.eraseSuppressions(ctx, id); err != nil {
		return err
	}
	found := false
	rec, rev, err := s.current(ctx, id)
	if err != nil && rev == 0 {
		return fmt.Errorf("erase subscription %s: %w", id, err)
	}
	if rec != nil && rec.KeySeq != 0 {
		err := s.keys.SecureDeleteMsg(ctx, rec.KeySeq)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !isNotFoundAPI(err) {
			return fmt.Errorf("erase subscription %s: delete data key: %w", id, err)
		}
		found = found || err == nil
	}
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
	if err := s.eraseCalls(ctx, id); err != nil {
		return fmt.Errorf("erase subscription %s: %w", id, err)
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

// isNotFoundAPI reports the server's "no message found" to a delete.
func isNotFoundAPI(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound
}

// migrateIndex moves the index of earlier versions (the renewals_ends
// bucket, one key d.<ordinal>.<id> per entry) into EndsStream, then
// deletes the bucket. Interrupted, it runs again at the next start: an
// entry written twice is read once.
func (s *Store) migrateIndex(ctx context.Context) error {
	old, err := s.js.KeyValue(ctx, EndsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open the end-date index of an earlier version (bucket %s): %w", EndsBucket, err)
	}
	lister, err := old.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("read the end-date index of an earlier version (bucket %s): %w", EndsBucket, err)
	}
	byDay := map[int64][]string{}
	for k := range lister.Keys() {
		rest, ok := strings.CutPrefix(k, "d.")
		ordS, id, ok2 := strings.Cut(rest, ".")
		ord, err := strconv.ParseInt(ordS, 10, 64)
		if ok && ok2 && err == nil {
			byDay[ord] = append(byDay[ord], id)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for ord, ids := range byDay {
		for c := 0; c < len(ids); c += 1000 {
			if err := s.index(ctx, ord, ids[c:min(c+1000, len(ids))]...); err != nil {
				return fmt.Errorf("move the end-date index into stream %s: %w", EndsStream, err)
			}
		}
	}
	if err := s.js.DeleteKeyValue(ctx, EndsBucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("delete the end-date index of an earlier version (bucket %s) after moving it: %w", EndsBucket, err)
	}
	return nil
}
