package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// Keys of the calls and the renewal facts:
//
//	renewals:calls:<id>   list: the subscription's calls, oldest first (shred.CallRecord JSON; caller and note sealed)
//	renewals:renewed      sorted set: member a RenewalFact's JSON, score the ordinal of its TermEnded
//
// Erase deletes the calls with the subscription; the renewal facts hold no
// personal data and stay for the renewals report.
func callsKey(id string) string { return Prefix + "calls:" + id }

const renewedKey = Prefix + "renewed"

var _ subscription.CallStore = (*Store)(nil)
var _ subscription.RenewalLog = (*Store)(nil)

// addCallScript appends the call only while the data key it was sealed under
// is still the subscription's (compared by SHA-1), so that a call can never
// outlive an erasure that ran between the read and the write.
var addCallScript = redis.NewScript(`
local k = redis.call('GET', KEYS[1])
if not k or redis.sha1hex(k) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('RPUSH', KEYS[3], ARGV[2])
return 1
`)

// AddCall seals c's caller and note under the subscription's data key and
// appends it to the subscription's calls.
func (s *Store) AddCall(ctx context.Context, c subscription.Call) error {
	dk, err := s.c.Get(ctx, dataKeyKey(c.SubscriptionID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return errf("record call of %s", subscription.ErrNotFound, c.SubscriptionID)
	}
	if err != nil {
		return errf("record call of %s", err, c.SubscriptionID)
	}
	b, err := shred.SealCall(dk, c)
	if err != nil {
		return err
	}
	sum := sha1.Sum(dk)
	n, err := addCallScript.Run(ctx, s.c, []string{dataKeyKey(c.SubscriptionID), subKey(c.SubscriptionID), callsKey(c.SubscriptionID)},
		hex.EncodeToString(sum[:]), b).Int()
	if err != nil {
		return errf("record call of %s", err, c.SubscriptionID)
	}
	if n == 0 {
		return errf("record call of %s", subscription.ErrNotFound, c.SubscriptionID)
	}
	return nil
}

// Calls returns the subscription's calls, oldest first.
func (s *Store) Calls(ctx context.Context, id string) ([]subscription.Call, error) {
	pipe := s.c.Pipeline()
	dkc := pipe.Get(ctx, dataKeyKey(id))
	lc := pipe.LRange(ctx, callsKey(id), 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, errf("read calls of %s", err, id)
	}
	dk, err := dkc.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, errf("read calls of %s", err, id)
	}
	out := make([]subscription.Call, 0, len(lc.Val()))
	for _, v := range lc.Val() {
		c, err := shred.OpenCall(dk, []byte(v))
		if err != nil {
			return nil, errf("read calls of %s", err, id)
		}
		out = append(out, c)
	}
	// Pushed in the order recorded; IDs are times, and a call entered late
	// sorts where it belongs.
	slices.SortStableFunc(out, func(a, b subscription.Call) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// AddRenewals adds the facts to the renewed set; a fact already there is
// the same member again.
func (s *Store) AddRenewals(ctx context.Context, facts []subscription.RenewalFact) error {
	if len(facts) == 0 {
		return nil
	}
	zs := make([]redis.Z, len(facts))
	for i, f := range facts {
		b, err := json.Marshal(f)
		if err != nil {
			return errf("record renewals", err)
		}
		zs[i] = redis.Z{Score: float64(f.TermEnded.Ordinal()), Member: string(b)}
	}
	if err := s.c.ZAdd(ctx, renewedKey, zs...).Err(); err != nil {
		return errf("record renewals", err)
	}
	return nil
}

// RenewalsEnding reads the renewed set by score.
func (s *Store) RenewalsEnding(ctx context.Context, from, to subscription.Date, fn func(subscription.RenewalFact) error) error {
	vals, err := s.c.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: renewedKey, ByScore: true,
		Start: strconv.FormatInt(from.Ordinal(), 10), Stop: strconv.FormatInt(to.Ordinal(), 10),
	}).Result()
	if err != nil {
		return errf("read renewals ending %v to %v", err, from, to)
	}
	facts := make([]subscription.RenewalFact, len(vals))
	for i, v := range vals {
		if err := json.Unmarshal([]byte(v), &facts[i]); err != nil {
			return fmt.Errorf("read renewals: %w", err)
		}
	}
	sortFacts(facts)
	for _, f := range facts {
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func sortFacts(fs []subscription.RenewalFact) { slices.SortFunc(fs, subscription.CompareFacts) }
