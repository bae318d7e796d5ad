// Package redisstore keeps subscriptions and the sent-ledger in Redis.
//
// Keys, all under the prefix "renewals:":
//
//	renewals:sub:<id>          string: the subscription record (shred.Record JSON, personal part sealed)
//	renewals:dk:<id>           string: the subscription's raw data key (shred.KeySize bytes)
//	renewals:ends              sorted set: member <id>, score the end date's ordinal
//	renewals:notice:<key>      hash: one ledger entry, keyed by the notice key
//	renewals:notices:<id>      set: the notice keys of one subscription, for List
//
// Every multi-key change is one Lua script, so that a crash or a concurrent
// writer never sees half of it.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// Prefix starts every key the stores write.
const Prefix = "renewals:"

const (
	endsKey   = Prefix + "ends"
	chunkRows = 500  // rows per Upsert script call: keeps Lua's unpack well inside its stack
	readChunk = 1000 // subscriptions per EndingBetween read
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
// has Redis rewrite its append-only file, so that no file keeps the key.
type Store struct {
	c     *redis.Client
	owned bool
	// rewriteMu serialises the AOF rewrites that erasures ask for.
	rewriteMu sync.Mutex
}

// Ledger is the Redis subscription.Ledger: one hash per notice key, changed
// only by small Lua scripts, so each transition is atomic.
type Ledger struct {
	c *redis.Client
}

var (
	_ subscription.Store  = (*Store)(nil)
	_ subscription.Ledger = (*Ledger)(nil)
)

// New returns the store and the ledger on client c. The caller keeps c and
// closes it; Store.Close does not.
func New(c *redis.Client) (*Store, *Ledger) {
	return &Store{c: c}, &Ledger{c: c}
}

// Open connects to the Redis at url (redis://[user:pass@]host:port/db, or
// rediss:// for TLS), checks that it answers, and returns the store and the
// ledger. Store.Close closes the connection.
func Open(ctx context.Context, url string) (*Store, *Ledger, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, fmt.Errorf("open redis store: RENEWALS_REDIS_URL is not a Redis URL (use redis://host:6379/0): %w", err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("open redis store at %s: %w", opt.Addr, err)
	}
	s, l := New(c)
	s.owned = true
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

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return errf("ping redis", err)
	}
	return nil
}

// upsertScript writes a chunk of records. KEYS: the end-date index, then per
// row its record key and data-key key. ARGV, five per row: id, data key,
// record JSON, digest, end ordinal. A row's data key must be the one stored
// (or there must be none, and then the row's key is stored): otherwise the
// row was sealed under a key that an Erase or another writer replaced
// meanwhile, and it comes back "r" for the caller to seal again. Per row it
// returns "c" (created), "u:<old ordinal>" (updated), "n:<ordinal>"
// (unchanged) or "r" (retry). Repeated ids see the earlier rows' writes.
var upsertScript = redis.NewScript(`
local n = #ARGV / 5
local recs, dks = {}, {}
for i = 1, n do recs[i] = KEYS[2*i]; dks[i] = KEYS[2*i+1] end
local oldv = redis.call('MGET', unpack(recs))
local oldk = redis.call('MGET', unpack(dks))
local curv, curk, out, setv, setk, zadd = {}, {}, {}, {}, {}, {}
for i = 1, n do
  local b = 5*(i-1)
  local id, dk, val, dig, ord = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4], ARGV[b+5]
  local rk = recs[i]
  local v, k = curv[rk], curk[rk]
  if v == nil then v = oldv[i] end
  if k == nil then k = oldk[i] end
  local res
  if k and k ~= dk then
    res = 'r'
  elseif not k or not v then
    res = 'c'
  else
    local old = string.match(v, '^{"d":"%x+","e":(%-?%d+)')
    if string.sub(v, 7, 70) == dig then res = 'n:' .. old else res = 'u:' .. old end
  end
  out[i] = res
  if res ~= 'r' and string.sub(res, 1, 1) ~= 'n' then
    if not k then
      setk[#setk+1] = dks[i]; setk[#setk+1] = dk
      curk[rk] = dk
    end
    setv[#setv+1] = rk; setv[#setv+1] = val
    zadd[#zadd+1] = ord; zadd[#zadd+1] = id
    curv[rk] = val
  end
end
if #setk > 0 then redis.call('MSET', unpack(setk)) end
if #setv > 0 then redis.call('MSET', unpack(setv)) end
if #zadd > 0 then redis.call('ZADD', KEYS[1], unpack(zadd)) end
return out
`)

type row struct {
	i   int // index in the caller's slice
	sub subscription.Subscription
}

// Upsert writes subs in chunks of one Lua script call each, all chunks in one
// pipelined round trip after one round trip that reads the data keys. The
// personal part of each record is sealed under the subscription's data key;
// a subscription seen for the first time gets a new one.
func (s *Store) Upsert(ctx context.Context, subs []subscription.Subscription) ([]subscription.UpsertResult, error) {
	for _, x := range subs {
		if err := subscription.ValidID(x.ID); err != nil {
			return nil, errf("upsert subscriptions", err)
		}
	}
	out := make([]subscription.UpsertResult, len(subs))
	todo := make([]row, len(subs))
	for i, x := range subs {
		todo[i] = row{i, x}
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == 5 {
			return nil, fmt.Errorf("upsert subscriptions: %d rows kept racing with erasures or other writers; try again", len(todo))
		}
		retry, err := s.upsertOnce(ctx, todo, out)
		if err != nil {
			return nil, err
		}
		todo = retry
	}
	return out, nil
}

func (s *Store) upsertOnce(ctx context.Context, rows []row, out []subscription.UpsertResult) ([]row, error) {
	// Round trip 1: the data keys of every id in the batch.
	var ids []string
	seen := make(map[string]bool, len(rows))
	for _, r := range rows {
		if !seen[r.sub.ID] {
			seen[r.sub.ID] = true
			ids = append(ids, r.sub.ID)
		}
	}
	keys, err := s.dataKeys(ctx, ids)
	if err != nil {
		return nil, errf("upsert subscriptions", err)
	}
	for _, id := range ids {
		if keys[id] == nil {
			k, err := shred.NewKey()
			if err != nil {
				return nil, errf("upsert subscriptions", err)
			}
			keys[id] = k
		}
	}
	// Seal every row, in parallel: this is most of the CPU an import costs.
	type sealed struct {
		val []byte
		dig string
		ord int64
	}
	recs := make([]sealed, len(rows))
	errs := make([]error, len(rows))
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(rows); i += workers {
				r, err := shred.SealSubscription(keys[rows[i].sub.ID], rows[i].sub)
				if err == nil {
					var b []byte
					b, err = r.Marshal()
					recs[i] = sealed{b, r.Digest, r.End}
				}
				errs[i] = err
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, errf("upsert subscriptions", err)
	}
	// Round trip 2: one script call per chunk, pipelined.
	pipe := s.c.Pipeline()
	var cmds []*redis.Cmd
	for lo := 0; lo < len(rows); lo += chunkRows {
		hi := min(lo+chunkRows, len(rows))
		ks := make([]string, 0, 1+2*(hi-lo))
		args := make([]any, 0, 5*(hi-lo))
		ks = append(ks, endsKey)
		for i := lo; i < hi; i++ {
			id := rows[i].sub.ID
			ks = append(ks, subKey(id), dataKeyKey(id))
			args = append(args, id, keys[id], recs[i].val, recs[i].dig, recs[i].ord)
		}
		cmds = append(cmds, upsertScript.EvalSha(ctx, pipe, ks, args...))
	}
	if _, err := pipe.Exec(ctx); err != nil && !isNoScript(err) {
		return nil, errf("upsert subscriptions", err)
	}
	var retry []row
	for c, cmd := range cmds {
		res, err := cmd.StringSlice()
		if isNoScript(err) { // first use on this server: load it, then run this chunk again
			lo := c * chunkRows
			retry = append(retry, rows[lo:min(lo+chunkRows, len(rows))]...)
			if err := upsertScript.Load(ctx, s.c).Err(); err != nil {
				return nil, errf("upsert subscriptions: load script", err)
			}
			continue
		}
		if err != nil {
			return nil, errf("upsert subscriptions", err)
		}
		for j, v := range res {
			r := rows[c*chunkRows+j]
			switch {
			case v == "c":
				out[r.i] = subscription.UpsertResult{Change: subscription.Created}
			case v == "r":
				retry = append(retry, r)
			case strings.HasPrefix(v, "u:"), strings.HasPrefix(v, "n:"):
				ord, err := strconv.ParseInt(v[2:], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("upsert subscription %s: stored record has no end date: %q", r.sub.ID, v)
				}
				ch := subscription.Updated
				if v[0] == 'n' {
					ch = subscription.Unchanged
				}
				out[r.i] = subscription.UpsertResult{Change: ch, PreviousEndDate: subscription.DateFromOrdinal(ord)}
			default:
				return nil, fmt.Errorf("upsert subscription %s: unexpected script reply %q", r.sub.ID, v)
			}
		}
	}
	return retry, nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// dataKeys reads the data keys of ids; a missing key maps to nil.
func (s *Store) dataKeys(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	pipe := s.c.Pipeline()
	var cmds []*redis.SliceCmd
	for lo := 0; lo < len(ids); lo += readChunk {
		part := ids[lo:min(lo+readChunk, len(ids))]
		ks := make([]string, len(part))
		for i, id := range part {
			ks[i] = dataKeyKey(id)
		}
		cmds = append(cmds, pipe.MGet(ctx, ks...))
	}
	if len(cmds) == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read data keys: %w", err)
	}
	for c, cmd := range cmds {
		for j, v := range cmd.Val() {
			if str, ok := v.(string); ok {
				out[ids[c*readChunk+j]] = []byte(str)
			}
		}
	}
	return out, nil
}

// Get returns the subscription with its personal data opened, or an error
// wrapping subscription.ErrNotFound. A record whose data key is gone (an
// erasure cut short) counts as erased.
func (s *Store) Get(ctx context.Context, id string) (subscription.Subscription, error) {
	pipe := s.c.Pipeline()
	rec := pipe.Get(ctx, subKey(id))
	dk := pipe.Get(ctx, dataKeyKey(id))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return subscription.Subscription{}, errf("get subscription %s", err, id)
	}
	if rec.Err() != nil || dk.Err() != nil {
		return subscription.Subscription{}, errf("get subscription %s", subscription.ErrNotFound, id)
	}
	x, err := open([]byte(rec.Val()), []byte(dk.Val()))
	if err != nil {
		return x, errf("get subscription %s", err, id)
	}
	return x, nil
}

func open(rec, dk []byte) (subscription.Subscription, error) {
	r, err := shred.UnmarshalRecord(rec)
	if err != nil {
		return subscription.Subscription{}, err
	}
	return shred.OpenSubscription(dk, r)
}

// EndingBetween reads the end-date index for [from, to] a chunk at a time
// (ZRANGE BYSCORE, continuing from the last score seen so no offset grows
// with the window) and, per chunk, the records and data keys in one
// pipelined round trip. It yields subscriptions ordered by end date, then by
// id. A subscription changed or erased while the pass runs is yielded as it
// is when its chunk is read, or not at all.
func (s *Store) EndingBetween(ctx context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error {
	lo, hi := from.Ordinal(), to.Ordinal()
	minScore, skip := strconv.FormatInt(lo, 10), int64(0)
	max := strconv.FormatInt(hi, 10)
	for {
		zs, err := s.c.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: endsKey, Start: minScore, Stop: max, ByScore: true, Offset: skip, Count: readChunk,
		}).Result()
		if err != nil {
			return errf("read subscriptions ending %v to %v", err, from, to)
		}
		if len(zs) == 0 {
			return nil
		}
		ids := make([]string, len(zs))
		for i, z := range zs {
			ids[i] = z.Member.(string)
		}
		if err := s.yield(ctx, ids, lo, hi, fn); err != nil {
			return err
		}
		if len(zs) < readChunk {
			return nil
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

func (s *Store) yield(ctx context.Context, ids []string, lo, hi int64, fn func(subscription.Subscription) error) error {
	rk, dk := make([]string, len(ids)), make([]string, len(ids))
	for i, id := range ids {
		rk[i], dk[i] = subKey(id), dataKeyKey(id)
	}
	pipe := s.c.Pipeline()
	recs, keys := pipe.MGet(ctx, rk...), pipe.MGet(ctx, dk...)
	if _, err := pipe.Exec(ctx); err != nil {
		return errf("read subscriptions", err)
	}
	for i, v := range recs.Val() {
		rec, ok1 := v.(string)
		key, ok2 := keys.Val()[i].(string)
		if !ok1 || !ok2 {
			continue // erased since the index was read
		}
		x, err := open([]byte(rec), []byte(key))
		if err != nil {
			return errf("read subscription %s", err, ids[i])
		}
		if o := x.EndDate.Ordinal(); o < lo || o > hi {
			continue // renewed since the index was read
		}
		if err := fn(x); err != nil {
			return err
		}
	}
	return nil
}

// eraseScript deletes the record, its data key and its index entry at once.
// It returns 1 when there was anything to erase.
var eraseScript = redis.NewScript(`
local n = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if n > 0 then return 1 end
return 0
`)

// Erase deletes the subscription's record, data key and index entry in one
// script, then, when the server keeps an append-only file, has Redis rewrite
// it and waits for the rewrite: until then the deleted data key still sits in
// the old AOF files. It returns an error wrapping subscription.ErrNotFound
// when there is no such subscription. RDB snapshots, replicas' files and
// backups keep the key until they are replaced; the sealed record they also
// hold cannot be opened without it once they are.
func (s *Store) Erase(ctx context.Context, id string) error {
	n, err := eraseScript.Run(ctx, s.c, []string{subKey(id), dataKeyKey(id), endsKey}, id).Int()
	if err != nil {
		return errf("erase subscription %s", err, id)
	}
	if n == 0 {
		return errf("erase subscription %s", subscription.ErrNotFound, id)
	}
	if err := s.rewriteAOF(ctx); err != nil {
		return fmt.Errorf("erase subscription %s: deleted, but the append-only file still holds its data key: %w", id, err)
	}
	return nil
}

// rewriteAOF starts an AOF rewrite that begins after now and waits for it to
// finish. Redis refuses a second rewrite while one runs, and one that is
// running may have forked before our delete, so wait for it and start ours.
func (s *Store) rewriteAOF(ctx context.Context) error {
	s.rewriteMu.Lock()
	defer s.rewriteMu.Unlock()
	info, err := s.persistence(ctx)
	if err != nil {
		return err
	}
	if info["aof_enabled"] != "1" {
		return nil
	}
	tick := time.NewTicker(10 * time.Millisecond) // Redis gives no signal when a rewrite ends: poll it
	defer tick.Stop()
	idle := func() (bool, error) {
		info, err := s.persistence(ctx)
		if err != nil {
			return false, err
		}
		return info["aof_rewrite_in_progress"] == "0" && info["aof_rewrite_scheduled"] == "0", nil
	}
	wait := func() error {
		for {
			ok, err := idle()
			if err != nil || ok {
				return err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for AOF rewrite: %w", ctx.Err())
			case <-tick.C:
			}
		}
	}
	for {
		err := s.c.BgRewriteAOF(ctx).Err()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "already in progress") {
			return fmt.Errorf("rewrite AOF: %w", err)
		}
		if err := wait(); err != nil {
			return err
		}
	}
	if err := wait(); err != nil {
		return err
	}
	info, err = s.persistence(ctx)
	if err != nil {
		return err
	}
	if st := info["aof_last_bgrewrite_status"]; st != "ok" {
		return fmt.Errorf("rewrite AOF: status %q, see the Redis log", st)
	}
	return nil
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
