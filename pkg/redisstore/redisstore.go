// Package redisstore keeps subscriptions and the sent-ledger in Redis.
//
// Keys, all under the prefix "renewals:":
//
//	renewals:sub:<id>          string: the subscription record (shred.Record's JSON, personal part sealed; records in the older compact form read too)
//	renewals:dk:<id>           string: the subscription's raw data key (shred.KeySize bytes)
//	renewals:ends              sorted set: member <id>, score the end date's ordinal
//	renewals:notice:<key>      hash: one ledger entry, keyed by the notice key
//	renewals:notices:<id>      set: the notice keys of one subscription, for List
//	renewals:suppress:<hash>   hash: the suppression list, by keyed hash of the address (bounce.go)
//	renewals:suppressed:<id>   set: the address hashes of one subscription's suppression records
//	renewals:health            string: the write probe of Ping, expiring after a minute
//
// Every multi-key change is one Lua script or one MULTI/EXEC transaction
// (Upsert: optimistic, under WATCH), so that a crash or a concurrent
// writer never sees half of it.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// Prefix starts every key the stores write.
const Prefix = "renewals:"

const (
	endsKey   = Prefix + "ends"
	readChunk = 1000 // subscriptions per EndingBetween read
	decoders  = 2    // goroutines decoding one chunk
)

func subKey(id string) string                   { return Prefix + "sub:" + id }
func dataKeyKey(id string) string               { return Prefix + "dk:" + id }
func noticeKey(k subscription.NoticeKey) string { return Prefix + "notice:" + k.String() }
func noticesKey(subscriptionID string) string   { return Prefix + "notices:" + subscriptionID }
func errf(op string, err error, args ...any) error {
	return fmt.Errorf(op+": %w", append(args, err)...)
}

// Store is the Redis subscription.Store. Its personal data is crypto-shredded
// (see package shred): Erase deletes the data key with the record and then
// has Redis rewrite its append-only file and its snapshot, so that no file
// keeps the key.
type Store struct {
	c *redis.Client
	// hot carries the commands issued once per notice from many goroutines
	// at once (see New).
	hot   redis.Cmdable
	owned bool
	// rewriteMu serialises the AOF rewrites and snapshots that erasures
	// ask for.
	rewriteMu sync.Mutex
	// seed spreads an Upsert batch over chunks by id.
	seed maphash.Seed
}

// Ledger is the Redis subscription.Ledger: one hash per notice key, changed
// only by small Lua scripts, so each transition is atomic.
type Ledger struct {
	c   *redis.Client
	hot redis.Cmdable
	// waitReplica makes Confirm wait for a replica (WAIT 1), unless the
	// primary had none connected before noReplicaUntil (Unix nanoseconds).
	waitReplica    bool
	noReplicaUntil atomic.Int64
}

var (
	_ subscription.Store  = (*Store)(nil)
	_ subscription.Ledger = (*Ledger)(nil)
)

// New returns the store and the ledger on client c. The caller keeps c and
// closes it; Store.Close does not.
//
// The commands the notifier issues once per notice (claim, read, confirm),
// from many workers at once, go through c's autopipeliner: it writes the
// commands that wait while one round trip is under way as the next
// pipeline, so that under load one system call carries dozens of them, in
// the client and in Redis alike, while a lone command still goes at once.
func New(c *redis.Client) (*Store, *Ledger) {
	var hot redis.Cmdable = c
	if ap, err := c.AutoPipeline(); err == nil {
		hot = ap
	}
	return &Store{c: c, hot: hot, seed: maphash.MakeSeed()}, &Ledger{c: c, hot: hot}
}

// Open connects to the Redis at url (redis://[user:pass@]host:port/db,
// rediss:// for TLS, or redis-sentinel://[:pass@]host:port[,host:port...]/MASTER[?db=N]
// for the master that Redis Sentinel names, followed through failovers),
// checks that it answers, and returns the store and the ledger.
// Store.Close closes the connection. Through Sentinel, or when the server
// has replicas connected, the ledger waits for a replica before it reports
// a confirm recorded (see Ledger.Confirm).
func Open(ctx context.Context, url string) (*Store, *Ledger, error) {
	c, where, replicated, err := newClient(url)
	if err != nil {
		return nil, nil, err
	}
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("cannot reach Redis at %s (%w): start it, or correct RENEWALS_REDIS_URL", where, err)
	}
	s, l := New(c)
	s.owned = true
	l.waitReplica = replicated || hasReplicas(ctx, c)
	return s, l, nil
}

// Close closes the connection when the store opened it (Open); it does
// nothing for a client passed to New.
func (s *Store) Close() error {
	if s.owned {
		return s.c.Close()
	}
	return nil
}

// healthKey is what Ping writes: no subscription's key, gone a minute
// after the last probe.
const healthKey = Prefix + "health"

// Ping reports whether Redis accepts a write, by writing healthKey: a
// server that answers but refuses writes (a replica, a primary short of
// min-replicas-to-write, a full disk under stop-writes-on-bgsave-error)
// cannot store an import or confirm a send.
func (s *Store) Ping(ctx context.Context) error { return ping(ctx, s.c) }

// Ping reports whether the ledger's Redis accepts a write, as Store.Ping.
func (l *Ledger) Ping(ctx context.Context) error { return ping(ctx, l.c) }

func ping(ctx context.Context, c *redis.Client) error {
	if err := c.Set(ctx, healthKey, "1", time.Minute).Err(); err != nil {
		return errf("write to redis", err)
	}
	return nil
}

// Get returns the subscription with its personal data opened, or an error
// wrapping subscription.ErrNotFound. A record whose data key is gone (an
// erasure cut short) counts as erased.
func (s *Store) Get(ctx context.Context, id string) (subscription.Subscription, error) {
	// One MGET reads the record and its data key at one point in time.
	vals, err := s.hot.MGet(ctx, subKey(id), dataKeyKey(id)).Result()
	if err != nil {
		return subscription.Subscription{}, errf("get subscription %s", err, id)
	}
	rec, ok1 := vals[0].(string)
	dk, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return subscription.Subscription{}, errf("get subscription %s", subscription.ErrNotFound, id)
	}
	x, err := shred.OpenRecord([]byte(dk), []byte(rec))
	if err != nil {
		return x, errf("get subscription %s", err, id)
	}
	return x, nil
}

// GetMany is Get for each of ids, in one MGET of every record and data key
// (one command for Redis to run, not one a subscription): subs[i] and
// errs[i] are what Get would have returned for ids[i].
func (s *Store) GetMany(ctx context.Context, ids []string) ([]subscription.Subscription, []error) {
	subs, errs := make([]subscription.Subscription, len(ids)), make([]error, len(ids))
	if len(ids) == 0 {
		return subs, errs
	}
	keys := make([]string, 0, 2*len(ids))
	for _, id := range ids {
		keys = append(keys, subKey(id), dataKeyKey(id))
	}
	vals, err := s.c.MGet(ctx, keys...).Result()
	if err == nil && len(vals) != len(keys) {
		err = fmt.Errorf("MGET replied %d values, want %d", len(vals), len(keys))
	}
	for i, id := range ids {
		if err != nil {
			errs[i] = errf("get subscription %s", err, id)
			continue
		}
		rec, ok1 := vals[2*i].(string)
		dk, ok2 := vals[2*i+1].(string)
		if !ok1 || !ok2 {
			errs[i] = errf("get subscription %s", subscription.ErrNotFound, id)
			continue
		}
		if subs[i], errs[i] = shred.OpenRecord([]byte(dk), []byte(rec)); errs[i] != nil {
			errs[i] = errf("get subscription %s", errs[i], id)
		}
	}
	return subs, errs
}

// EndingBetween reads the end-date index for [from, to] a chunk at a time
// (ZRANGE BYSCORE, continuing from the last score seen so no offset grows
// with the window) and, per chunk, the records and data keys in one
// pipelined round trip. It yields subscriptions ordered by end date, then by
// id. A subscription changed or erased while the pass runs is yielded as it
// is when its chunk is read, or not at all. While fn works through one
// chunk the next is read ahead and decoded on several cores, so Redis, the
// decoding and the caller work side by side; fn is always called on the
// caller's goroutine.
func (s *Store) EndingBetween(ctx context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error {
	ctx, cancel := context.WithCancel(ctx)
	chunks := make(chan chunk, 1)
	go func() {
		defer close(chunks)
		s.readWindow(ctx, from, to, chunks)
	}()
	defer func() {
		cancel()
		for range chunks { // wait for the reader to stop
		}
	}()
	for c := range chunks {
		if c.err != nil {
			return c.err
		}
		if err := ctx.Err(); err != nil {
			break // not the chunk read ahead: ctx ended while fn ran
		}
		for _, x := range c.subs {
			if err := fn(x); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return errf("read subscriptions ending %v to %v", err, from, to)
	}
	return nil
}

// chunk is one read of EndingBetween: its subscriptions, or the error that
// ended the reading.
type chunk struct {
	subs []subscription.Subscription
	err  error
}

// readWindow sends the chunks of [from, to] to out until the window is read,
// a read fails (its error is the last chunk) or ctx ends.
func (s *Store) readWindow(ctx context.Context, from, to subscription.Date, out chan<- chunk) {
	send := func(c chunk) bool {
		select {
		case out <- c:
			return c.err == nil
		case <-ctx.Done():
			return false
		}
	}
	lo, hi := from.Ordinal(), to.Ordinal()
	minScore, skip := strconv.FormatInt(lo, 10), int64(0)
	max := strconv.FormatInt(hi, 10)
	for {
		zs, err := s.c.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: endsKey, Start: minScore, Stop: max, ByScore: true, Offset: skip, Count: readChunk,
		}).Result()
		if err != nil {
			send(chunk{err: errf("read subscriptions ending %v to %v", err, from, to)})
			return
		}
		if len(zs) == 0 {
			return
		}
		ids := make([]string, len(zs))
		for i, z := range zs {
			ids[i] = z.Member.(string)
		}
		subs, err := s.read(ctx, ids, lo, hi)
		if !send(chunk{subs, err}) || len(zs) < readChunk {
			return
		}
		// Continue at the last score, skipping the members of it already read.
		last := zs[len(zs)-1].Score
		same := int64(0)
		for i := len(zs) - 1; i >= 0 && zs[i].Score == last; i-- {
			same++
		}
		if ls := strconv.FormatInt(int64(last), 10); ls == minScore {
			skip += same
		} else {
			minScore, skip = ls, same
		}
	}
}

// read returns the subscriptions ids whose end date is still in [lo, hi].
func (s *Store) read(ctx context.Context, ids []string, lo, hi int64) ([]subscription.Subscription, error) {
	rk, dk := make([]string, len(ids)), make([]string, len(ids))
	for i, id := range ids {
		rk[i], dk[i] = subKey(id), dataKeyKey(id)
	}
	pipe := s.c.Pipeline()
	recs, keys := pipe.MGet(ctx, rk...), pipe.MGet(ctx, dk...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, errf("read subscriptions", err)
	}
	// Decoding is most of the work of a read: it is spread over the cores,
	// a contiguous part of the chunk each, so the order stays.
	subs, keep, errs := make([]subscription.Subscription, len(ids)), make([]bool, len(ids)), make([]error, len(ids))
	decode := func(i int) {
		rec, ok1 := recs.Val()[i].(string)
		key, ok2 := keys.Val()[i].(string)
		if !ok1 || !ok2 {
			return // erased since the index was read
		}
		x, err := shred.OpenRecord([]byte(key), []byte(rec))
		if err != nil {
			errs[i] = errf("read subscription %s", err, ids[i])
			return
		}
		if o := x.EndDate.Ordinal(); o >= lo && o <= hi { // else renewed since the index was read
			subs[i], keep[i] = x, true
		}
	}
	var wg sync.WaitGroup
	step := (len(ids) + decoders - 1) / decoders
	for from := 0; from < len(ids); from += step {
		wg.Go(func() {
			for i := from; i < min(from+step, len(ids)); i++ {
				decode(i)
			}
		})
	}
	wg.Wait()
	out := make([]subscription.Subscription, 0, len(ids))
	for i := range ids {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if keep[i] {
			out = append(out, subs[i])
		}
	}
	return out, nil
}

// eraseScript deletes the record, its data key, its index entry and its
// calls at once.
// It returns 1 when there was anything to erase.
var eraseScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
if n > 0 then return 1 end
return 0
`)

// Erase deletes the subscription's record, data key and index entry in one
// script, then has Redis replace the files that still hold them, and waits
// for it: when the server keeps an append-only file, a rewrite of it; when
// it keeps snapshots (save is configured, or one was written or loaded since
// it started), a new dump.rdb (see snapshot). Until then the deleted data key
// and sealed record still sit in the old files. It returns an error wrapping
// subscription.ErrNotFound when there is no such subscription. Replicas'
// files and backups keep the key until they are replaced; the sealed record
// they also hold cannot be opened without it once they are.
func (s *Store) Erase(ctx context.Context, id string) error {
	if err := s.eraseSuppressions(ctx, id); err != nil {
		return err
	}
	n, err := eraseScript.Run(ctx, s.c, []string{subKey(id), dataKeyKey(id), endsKey, callsKey(id)}, id).Int()
	if err != nil {
		return errf("erase subscription %s", err, id)
	}
	if n == 0 {
		return errf("erase subscription %s", subscription.ErrNotFound, id)
	}
	if err := s.rewriteAOF(ctx); err != nil {
		return fmt.Errorf("erase subscription %s: deleted, but the append-only file still holds its data key: %w", id, err)
	}
	if err := s.snapshot(ctx); err != nil {
		return fmt.Errorf("erase subscription %s: deleted, but the Redis snapshot (dump.rdb) still holds its data key: %w", id, err)
	}
	return nil
}

// rewriteAOF starts an AOF rewrite that begins after now and waits for it to
// finish, when the server keeps an append-only file.
func (s *Store) rewriteAOF(ctx context.Context) error {
	s.rewriteMu.Lock()
	defer s.rewriteMu.Unlock()
	info, err := s.persistence(ctx)
	if err != nil || info["aof_enabled"] != "1" {
		return err
	}
	return s.background(ctx, job{
		name:  "rewrite AOF",
		start: func() error { return s.c.BgRewriteAOF(ctx).Err() },
		busy: func(info map[string]string) bool {
			return info["aof_rewrite_in_progress"] != "0" || info["aof_rewrite_scheduled"] != "0"
		},
		status: "aof_last_bgrewrite_status",
	})
}

// SnapshotWait bounds how long Erase waits for the snapshot that replaces
// dump.rdb, on top of the caller's context.
const SnapshotWait = 2 * time.Minute

// snapshot writes a new RDB snapshot that begins after now (BGSAVE) and
// waits, at most SnapshotWait, for it to replace the old one, when the
// server keeps snapshots: save is configured, or a snapshot was written
// (rdb_saves) or, with no append-only file, loaded since it started, so that
// a dump.rdb exists.
func (s *Store) snapshot(ctx context.Context) error {
	s.rewriteMu.Lock()
	defer s.rewriteMu.Unlock()
	info, err := s.persistence(ctx)
	if err != nil {
		return err
	}
	if on, err := s.snapshotsOn(ctx, info); err != nil || !on {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, SnapshotWait)
	defer cancel()
	return s.background(ctx, job{
		name:  "snapshot (BGSAVE)",
		start: func() error { return s.c.BgSave(ctx).Err() },
		busy: func(info map[string]string) bool {
			return info["rdb_bgsave_in_progress"] != "0" || info["aof_rewrite_in_progress"] == "1" || info["module_fork_in_progress"] == "1"
		},
		status: "rdb_last_bgsave_status",
	})
}

// job is one of Redis's background jobs (a forked child writing a file).
type job struct {
	name   string
	start  func() error                 // asks Redis to start it
	busy   func(map[string]string) bool // whether INFO persistence shows it, or what blocks it, running
	status string                       // the INFO field of its last result
}

// background runs j and waits for it to finish. Redis refuses to start one
// while it (or another child) runs, and one already running may have forked
// before our delete: wait for it, then start ours. Redis gives no signal
// when a job ends, so INFO is polled.
func (s *Store) background(ctx context.Context, j job) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	wait := func() error {
		for {
			info, err := s.persistence(ctx)
			if err != nil {
				return err
			}
			if !j.busy(info) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for %s: %w", j.name, ctx.Err())
			case <-tick.C:
			}
		}
	}
	for {
		err := j.start()
		if err == nil {
			break
		}
		// "Background append only file rewriting already in progress",
		// "Background save already in progress", or "Another child
		// process is active (AOF?): can't BGSAVE right now".
		if m := err.Error(); !strings.Contains(m, "in progress") && !strings.Contains(m, "child process") {
			return fmt.Errorf("%s: %w", j.name, err)
		}
		if err := wait(); err != nil {
			return err
		}
	}
	if err := wait(); err != nil {
		return err
	}
	info, err := s.persistence(ctx)
	if err != nil {
		return err
	}
	if st := info[j.status]; st != "ok" {
		return fmt.Errorf("%s: status %q, see the Redis log", j.name, st)
	}
	return nil
}

// snapshotsOn reports whether the server keeps an RDB snapshot that an
// erasure must replace. A server that refuses CONFIG (some hosted ones do)
// is judged by its persistence info alone.
func (s *Store) snapshotsOn(ctx context.Context, info map[string]string) (bool, error) {
	if n, _ := strconv.Atoi(info["rdb_saves"]); n > 0 {
		return true, nil
	}
	if n, _ := strconv.Atoi(info["rdb_last_load_keys_loaded"]); n > 0 && info["aof_enabled"] != "1" {
		return true, nil
	}
	cfg, err := s.c.ConfigGet(ctx, "save").Result()
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false, fmt.Errorf("read redis save setting: %w", err)
		}
		return false, nil
	}
	return strings.TrimSpace(cfg["save"]) != "", nil
}

func (s *Store) persistence(ctx context.Context) (map[string]string, error) {
	txt, err := s.c.Info(ctx, "persistence").Result()
	if err != nil {
		return nil, fmt.Errorf("read redis persistence info: %w", err)
	}
	m := map[string]string{}
	for line := range strings.SplitSeq(txt, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m, nil
}
