package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// Upsert tuning. A batch is cut into chunks of about chunkRows rows, and up
// to chunkWorkers chunks run at once, each on its own connection: while one
// chunk waits on Redis another is being sealed, which is where an import
// spends most of its CPU. Chunks are kept small because Redis 7.0 checks
// each WATCHed key against every key the connection already watches: at 256
// rows that quadratic cost was about 0.5 µs of Redis CPU a row more than at
// 128 (a 1M-row import, 6.5 against 6.0 µs a row).
const (
	chunkRows    = 128
	chunkWorkers = 2
	maxAttempts  = 10
)

// row is one subscription of an Upsert call with its index in the caller's
// slice.
type row struct {
	i   int
	sub subscription.Subscription
}

// Upsert writes subs by id and reports, per row, whether it created,
// updated or left unchanged the stored record (with the stored end date as
// PreviousEndDate for the last two). Rows with the same id are applied in
// order, each compared with the one before. The personal part of each
// record is sealed under the subscription's data key; a subscription seen for
// the first time gets a new one.
//
// Each chunk of the batch is one optimistic transaction on its own
// connection, with no Lua and no command per row:
//
//  1. one pipelined round trip: WATCH the ids' data keys, MGET them, MGET
//     the records;
//  2. seal each row under its data key, or under a new random one when the
//     id has none (a new id, or an erased one: a record left without its key
//     belongs to an erased past, so the row creates it), and compare
//     digests: only created and updated records are written;
//  3. MULTI, MSET each changed record together with its data key (the same
//     value again, or the new one), ZADD the end dates that changed, EXEC.
//
// Only the data keys are watched, because Redis 7.0's WATCH costs time
// quadratic in the keys one connection watches; writing the data key with
// every record is what lets that one key stand for both. Another importer
// writing the same id (which writes its data key, so two importers of a new
// id cannot both create it), or an Erase of it (which deletes it), between 1
// and 3 touches a watched key: EXEC then does nothing and the chunk starts
// again from 1, so every reported result is exact for the state it was
// written over, a new id gets exactly one data key, and a record is never
// written under a data key that an Erase has destroyed. Rows of one id
// always fall into the same chunk, so their order holds. A chunk that keeps
// losing the race gives up after a few attempts with an error.
func (s *Store) Upsert(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	for _, x := range subs {
		if err := subscription.ValidID(x.ID); err != nil {
			return nil, errf("upsert subscriptions", err)
		}
	}
	out := make([]subscription.UpsertResult, len(subs))
	n := (len(subs) + chunkRows - 1) / chunkRows
	if n == 0 {
		return out, nil
	}
	chunks := make([][]row, n)
	for i, x := range subs { // by id, so that all rows of an id share a chunk, in order
		c := int(maphash.String(s.seed, x.ID) % uint64(n))
		chunks[c] = append(chunks[c], row{i, x})
	}
	work := make(chan []row)
	errs := make([]error, min(chunkWorkers, n))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for rows := range work {
				if errs[w] == nil {
					errs[w] = s.upsertChunk(ctx, rows, out)
				}
			}
		})
	}
	for _, c := range chunks {
		if len(c) > 0 {
			work <- c
		}
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errf("upsert subscriptions", err)
	}
	return out, nil
}

func (s *Store) upsertChunk(ctx context.Context, rows []row, out []subscription.UpsertResult) error {
	for range maxAttempts {
		err := s.c.Watch(ctx, func(tx *redis.Tx) error { return s.upsertTx(ctx, tx, rows, out) })
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		return err
	}
	return fmt.Errorf("%d rows kept racing with erasures or other writers of the same subscriptions; try again", len(rows))
}

// stored is what Upsert knows of one id's record: whether there is one, and
// its digest and end date.
type stored struct {
	exists bool
	digest string
	end    int64
	val    []byte // the record to write, when a row of the chunk changed it
	write  bool
	usage  *subscription.SeatUsage // kept by a row that carries none
}

func (s *Store) upsertTx(ctx context.Context, tx *redis.Tx, rows []row, out []subscription.UpsertResult) error {
	// Unique ids, in order of first appearance.
	ids := make([]string, 0, len(rows))
	at := make(map[string]int, len(rows))
	for _, r := range rows {
		if _, ok := at[r.sub.ID]; !ok {
			at[r.sub.ID] = len(ids)
			ids = append(ids, r.sub.ID)
		}
	}
	dks := make([]string, len(ids))
	sks := make([]string, len(ids))
	watch := make([]any, 0, 1+len(ids))
	watch = append(watch, "watch")
	for i, id := range ids {
		dks[i], sks[i] = dataKeyKey(id), subKey(id)
		watch = append(watch, dks[i])
	}
	// Round trip 1: watch, then read what the watch covers.
	var dkv, recs *redis.SliceCmd
	_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, watch...)
		dkv = p.MGet(ctx, dks...)
		recs = p.MGet(ctx, sks...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	keys := make([][]byte, len(ids))
	state := make([]stored, len(ids))
	ends := make([]int64, len(ids)) // the stored end ordinals; the index already holds them
	var fresh []byte                // new data keys, for the ids without one
	for i, v := range dkv.Val() {
		ends[i] = math.MinInt64
		k, ok := v.(string)
		if !ok {
			// No data key: a new id, or one erased; any record left
			// belongs to an erased past, so the row creates it.
			if fresh == nil {
				fresh = make([]byte, len(ids)*shred.KeySize)
				if _, err := rand.Read(fresh); err != nil {
					tx.Unwatch(ctx)
					return fmt.Errorf("new data keys: %w", err)
				}
			}
			keys[i] = fresh[i*shred.KeySize : (i+1)*shred.KeySize : (i+1)*shred.KeySize]
			continue
		}
		if len(k) != shred.KeySize {
			tx.Unwatch(ctx)
			return fmt.Errorf("subscription %s: stored data key has %d bytes, not %d", ids[i], len(k), shred.KeySize)
		}
		keys[i] = []byte(k)
		if rec, ok := recs.Val()[i].(string); ok {
			old, err := shred.UnmarshalRecord([]byte(rec))
			if err != nil {
				tx.Unwatch(ctx)
				return fmt.Errorf("subscription %s: %w", ids[i], err)
			}
			usage, err := shred.Usage(old)
			if err != nil {
				tx.Unwatch(ctx)
				return fmt.Errorf("subscription %s: %w", ids[i], err)
			}
			state[i] = stored{exists: true, digest: old.Digest, end: old.End, usage: usage}
			ends[i] = old.End
		}
	}
	// Seal and compare, row by row in order.
	var changed int
	for _, r := range rows {
		st := &state[at[r.sub.ID]]
		sub := subscription.KeepUsage(r.sub, st.usage)
		rec, err := shred.SealSubscription(keys[at[r.sub.ID]], sub)
		if err != nil {
			tx.Unwatch(ctx)
			return err
		}
		switch {
		case !st.exists:
			out[r.i] = subscription.UpsertResult{Change: subscription.Created}
		case st.digest == rec.Digest:
			out[r.i] = subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: subscription.DateFromOrdinal(st.end)}
			continue
		default:
			out[r.i] = subscription.UpsertResult{Change: subscription.Updated, PreviousEndDate: subscription.DateFromOrdinal(st.end)}
		}
		val, err := rec.Marshal()
		if err != nil {
			tx.Unwatch(ctx)
			return err
		}
		if !st.write {
			changed++
		}
		*st = stored{exists: true, digest: rec.Digest, end: rec.End, val: val, write: true, usage: sub.Usage}
	}
	if changed == 0 {
		tx.Unwatch(ctx)
		return nil
	}
	// Round trip 2: the changed records, only if nothing watched moved.
	mset := make([]any, 0, 4*changed)
	zadd := make([]redis.Z, 0, changed)
	for i, st := range state {
		if st.write {
			mset = append(mset, dks[i], keys[i], sks[i], st.val)
			if st.end != ends[i] {
				zadd = append(zadd, redis.Z{Score: float64(st.end), Member: ids[i]})
			}
		}
	}
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.MSet(ctx, mset...)
		if len(zadd) > 0 {
			p.ZAdd(ctx, endsKey, zadd...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write records: %w", err)
	}
	return nil
}
