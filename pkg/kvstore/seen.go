package kvstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"renewals/pkg/subscription"
)

// seen is the store's memory of the rows it upserted, which lets a
// re-import of an unchanged file settle its rows without reading their
// records back.
//
// Upserting a row onto the record that the same row's upsert left gives
// Unchanged (an upsert is idempotent), so a row that the memory holds is
// unchanged for as long as its record has not been written since. The
// memory accounts for every write to the subscriptions bucket by sequence:
// the records that upsertBatch writes, by the sequences their atomic
// batches return, and Ping's writes. Any other write (a Put, a usage
// update, an erasure's purge, another process, its health checks included)
// leaves a sequence unaccounted for, and the memory is not used until,
// with none of this store's batches in flight, it is dropped and starts
// again at the bucket's last sequence. So are changes that write no
// sequence: a deletion in the keys stream (an erasure cut short in another
// process deletes a key and leaves its record), fewer messages in the
// bucket (a purge of its stream), either stream declared anew. Two batches
// in flight at once that hold one id (two imports at once) drop it as
// well, since the order of their writes is not known here.
//
// It keeps a hash of the id and a digest of the row (20 to 40 bytes a row
// in the map), both with seeds random to the process, so it holds nothing
// that can be read back; Erase drops it at once. It lives in memory only:
// after a restart the first re-import reads the records (settleRuns) and
// fills it. It serves one process that writes alone, the embedded
// default; where several processes write to one server, their writes
// keep dropping it.
type seen struct {
	seedID, seedRow maphash.Seed

	mu       sync.Mutex
	epoch    uint64
	stale    bool       // drop the memory once no batch is in flight
	through  uint64     // every write to the bucket up to this sequence is accounted for
	base     streamsNow // the streams when the memory started
	most     streamsNow // the newest reading of them
	spans    []run      // sequences accounted for, above through
	batches  int        // batches in flight
	inflight map[uint64]int
	rows     map[uint64]uint64 // id hash -> row digest
	settled  atomic.Int64      // rows settled from memory, for tests
}

func newSeen() *seen {
	return &seen{seedID: maphash.MakeSeed(), seedRow: maphash.MakeSeed(), inflight: map[uint64]int{}, rows: map[uint64]uint64{}}
}

// streamsNow is what begin reads of the two streams.
type streamsNow struct {
	last        uint64    // the bucket's last sequence
	msgs        uint64    // the bucket's messages
	keysRemoved uint64    // keys written and no longer held
	created     time.Time // when the bucket's stream was declared
	keysCreated time.Time
}

// ticket is one batch's part in the memory.
type ticket struct {
	epoch  uint64
	usable bool     // every write up to the bucket's last sequence is accounted for
	ids    []uint64 // the rows' id hashes
	digest []uint64 // the rows' digests
}

// digester digests rows as given to Upsert: each row's JSON (every field,
// in declaration order) hashed with the process's seed. One digests the
// rows of one batch.
type digester struct {
	seed maphash.Seed
	h    maphash.Hash
	enc  *json.Encoder
}

func (m *seen) digester() *digester {
	d := &digester{seed: m.seedRow}
	d.enc = json.NewEncoder(&d.h)
	return d
}

func (d *digester) digest(x subscription.Subscription) (uint64, error) {
	d.h.SetSeed(d.seed)
	if err := d.enc.Encode(x); err != nil {
		return 0, fmt.Errorf("digest subscription %s: %w", x.ID, err)
	}
	return d.h.Sum64(), nil
}

// streams reads how far the bucket and the keys stream have been written.
func (s *Store) streams(ctx context.Context) (streamsNow, error) {
	info, err := s.subsInfo.Info(ctx)
	if err != nil {
		return streamsNow{}, err
	}
	keys, err := s.keys.Info(ctx)
	if err != nil {
		return streamsNow{}, err
	}
	return streamsNow{
		last: info.State.LastSeq, msgs: info.State.Msgs, created: info.Created,
		// Keys are only ever added at the end, so the sequences written
		// and not held count the keys deleted or purged.
		keysRemoved: keys.State.LastSeq - keys.State.Msgs, keysCreated: keys.Created,
	}, nil
}

// beginSeen enters a batch of subs (distinct ids) into the memory: it
// drops the memory when the streams show a change it does not account for
// and no batch is in flight, and says whether the memory may settle rows.
// When the streams cannot be read, the batch goes without the memory (nil),
// and its writes, unaccounted for, drop it later.
func (s *Store) beginSeen(ctx context.Context, subs []subscription.Subscription) (*ticket, error) {
	m := s.seen
	t := &ticket{ids: make([]uint64, len(subs)), digest: make([]uint64, len(subs))}
	d := m.digester()
	for i, x := range subs {
		t.ids[i] = maphash.String(m.seedID, x.ID)
		var err error
		if t.digest[i], err = d.digest(x); err != nil {
			return nil, err
		}
	}
	now, err := s.streams(ctx)
	if err != nil {
		return nil, nil // the memory only saves reads: without it the batch reads its records
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.advance()
	// Sequences not accounted for may be this store's batches in flight;
	// the rest is never this store's batches: a stream declared anew, a
	// key removed, fewer messages in the bucket.
	unaccounted := m.through < now.last
	if !now.created.Equal(m.base.created) || !now.keysCreated.Equal(m.base.keysCreated) || now.keysRemoved != m.base.keysRemoved {
		m.stale = true
	}
	// Messages are compared with a reading no older (by the bucket's last
	// sequence), since one batch may read the streams before another.
	if now.last >= m.most.last {
		if now.msgs < m.most.msgs {
			m.stale = true
		}
		m.most = now
	}
	if m.batches == 0 && (m.epoch == 0 || m.stale || unaccounted) {
		m.epoch++
		m.stale, m.through, m.base, m.most, m.spans = false, now.last, now, now, nil
		clear(m.rows)
		unaccounted = false
	}
	t.epoch = m.epoch
	t.usable = len(m.rows) > 0 && !m.stale && !unaccounted
	m.batches++
	for _, id := range t.ids {
		if m.inflight[id]++; m.inflight[id] > 1 {
			m.stale = true
		}
	}
	return t, nil
}

// settle writes Unchanged into out for the rows of t that the memory holds,
// and reports which.
func (m *seen) settle(t *ticket, subs []subscription.Subscription, out []subscription.UpsertResult, settled []bool) {
	if t == nil || !t.usable {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stale || t.epoch != m.epoch {
		return
	}
	for i, id := range t.ids {
		if d, ok := m.rows[id]; ok && d == t.digest[i] {
			settled[i] = true
			out[i] = subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: subs[i].EndDate}
			m.settled.Add(1)
		}
	}
}

// end takes the batch of t out of the flight. When it succeeded (written
// are the sequences of the records it wrote), its rows and writes enter the
// memory, unless the memory started again since it began.
func (m *seen) end(t *ticket, ok bool, written []uint64) {
	if t == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches--
	for _, id := range t.ids {
		if m.inflight[id]--; m.inflight[id] <= 0 {
			delete(m.inflight, id)
		}
	}
	if !ok || t.epoch != m.epoch || m.stale {
		return
	}
	m.addSpans(written)
	for i, id := range t.ids {
		m.rows[id] = t.digest[i]
	}
}

// account adds a write that touches no record (Ping's) to the memory.
func (m *seen) account(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addSpans([]uint64{seq})
}

// addSpans adds the sequences seqs, ascending, as spans, and moves through
// over the spans that continue it.
func (m *seen) addSpans(seqs []uint64) {
	for _, q := range seqs {
		if n := len(m.spans); n > 0 && m.spans[n-1].last+1 == q {
			m.spans[n-1].last = q
		} else {
			m.spans = append(m.spans, run{q, q})
		}
	}
	m.advance()
}

// advance moves through over the spans that continue it.
func (m *seen) advance() {
	slices.SortFunc(m.spans, func(a, b run) int { return cmp.Compare(a.first, b.first) })
	n := 0
	for _, r := range m.spans {
		switch {
		case r.last <= m.through:
		case r.first <= m.through+1:
			m.through = r.last
		default:
			m.spans[n] = r
			n++
		}
	}
	m.spans = m.spans[:n]
}

// drop forgets every row at once (an erasure).
func (m *seen) drop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
	m.stale = true
	clear(m.rows)
}
