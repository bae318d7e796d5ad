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

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// The buckets of calls and renewal facts, declared on first use:
//
//	bucket renewals_calls      key <id>.<call id>: one call (shred.CallRecord JSON; caller and note sealed)
//	bucket renewals_renewals   key r.<term-ended ordinal>.<id>.<new end ordinal>: one RenewalFact (JSON)
//
// Erase purges the calls with the subscription; what old revisions leave in
// the bucket's files is sealed under the data key it securely deletes. The
// renewal facts hold no personal data and stay for the renewals report.
const (
	CallsBucket    = "renewals_calls"
	RenewalsBucket = "renewals_renewals"
)

var (
	_ subscription.CallStore  = (*Store)(nil)
	_ subscription.RenewalLog = (*Store)(nil)
)

// lazyBuckets holds the buckets that only calls and renewals use.
type lazyBuckets struct {
	mu              sync.Mutex
	calls, renewals jetstream.KeyValue
}

func (s *Store) bucket(ctx context.Context, name string, dst *jetstream.KeyValue, desc string) (jetstream.KeyValue, error) {
	s.lazy.mu.Lock()
	defer s.lazy.mu.Unlock()
	if *dst != nil {
		return *dst, nil
	}
	b, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: desc, History: 1, Storage: jetstream.FileStorage, Replicas: max(s.replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("declare key-value bucket %s: %w", name, err)
	}
	*dst = b
	return b, nil
}

func (s *Store) callsKV(ctx context.Context) (jetstream.KeyValue, error) {
	return s.bucket(ctx, CallsBucket, &s.lazy.calls, "renewals: calls, caller and note sealed")
}

func (s *Store) renewalsKV(ctx context.Context) (jetstream.KeyValue, error) {
	return s.bucket(ctx, RenewalsBucket, &s.lazy.renewals, "renewals: renewal facts, r.<term-ended>.<id>.<new end>")
}

// AddCall seals c's caller and note under the subscription's data key and
// stores it. After writing it checks that the data key is still there, and
// purges the call when an erasure came between.
func (s *Store) AddCall(ctx context.Context, c subscription.Call) error {
	kv, err := s.callsKV(ctx)
	if err != nil {
		return err
	}
	_, ok, err := s.read(ctx, c.SubscriptionID)
	if err != nil {
		return fmt.Errorf("record call of %s: %w", c.SubscriptionID, err)
	}
	if !ok {
		return fmt.Errorf("record call of %s: %w", c.SubscriptionID, subscription.ErrNotFound)
	}
	key, err := s.keyOf(ctx, c.SubscriptionID)
	if err != nil {
		return err
	}
	if key == nil {
		return fmt.Errorf("record call of %s: %w", c.SubscriptionID, subscription.ErrNotFound)
	}
	b, err := shred.SealCall(key, c)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, c.SubscriptionID+"."+c.ID, b); err != nil {
		return fmt.Errorf("record call of %s: %w", c.SubscriptionID, err)
	}
	if k, err := s.keyOf(ctx, c.SubscriptionID); err == nil && k == nil {
		_ = kv.Purge(ctx, c.SubscriptionID+"."+c.ID)
		return fmt.Errorf("record call of %s: %w", c.SubscriptionID, subscription.ErrNotFound)
	}
	return nil
}

// Calls returns the subscription's calls, oldest first.
func (s *Store) Calls(ctx context.Context, id string) ([]subscription.Call, error) {
	if err := subscription.ValidID(id); err != nil {
		return nil, fmt.Errorf("read calls: %w", err)
	}
	kv, err := s.callsKV(ctx)
	if err != nil {
		return nil, err
	}
	key, err := s.keyOf(ctx, id)
	if err != nil || key == nil {
		return nil, err
	}
	keys, err := listKeys(ctx, kv, id+".*")
	if err != nil {
		return nil, fmt.Errorf("read calls of %s: %w", id, err)
	}
	slices.Sort(keys)
	out := make([]subscription.Call, 0, len(keys))
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read calls of %s: %w", id, err)
		}
		c, err := shred.OpenCall(key, e.Value())
		if err != nil {
			return nil, fmt.Errorf("read calls of %s: %w", id, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// eraseCalls purges every call of id.
func (s *Store) eraseCalls(ctx context.Context, id string) error {
	kv, err := s.callsKV(ctx)
	if err != nil {
		return err
	}
	keys, err := listKeys(ctx, kv, id+".*")
	if err != nil {
		return fmt.Errorf("erase calls of %s: %w", id, err)
	}
	for _, k := range keys {
		if err := kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("erase calls of %s: %w", id, err)
		}
	}
	return nil
}

// listKeys returns the keys of kv matching the filters; none when the
// bucket is empty.
func listKeys(ctx context.Context, kv jetstream.KeyValue, filters ...string) ([]string, error) {
	l, err := kv.ListKeysFiltered(ctx, filters...)
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out, ctx.Err()
}

func factKey(f subscription.RenewalFact) string {
	return "r." + strconv.FormatInt(f.TermEnded.Ordinal(), 10) + "." + f.SubscriptionID + "." + strconv.FormatInt(f.NewEndDate.Ordinal(), 10)
}

// AddRenewals writes one key per fact.
func (s *Store) AddRenewals(ctx context.Context, facts []subscription.RenewalFact) error {
	if len(facts) == 0 {
		return nil
	}
	kv, err := s.renewalsKV(ctx)
	if err != nil {
		return err
	}
	for _, f := range facts {
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("record renewals: %w", err)
		}
		if _, err := kv.Put(ctx, factKey(f), b); err != nil {
			return fmt.Errorf("record renewal of %s: %w", f.SubscriptionID, err)
		}
	}
	return nil
}

// RenewalsEnding lists the facts' keys sixteen days per listing, as
// EndingBetween does, and reads them.
func (s *Store) RenewalsEnding(ctx context.Context, from, to subscription.Date, fn func(subscription.RenewalFact) error) error {
	kv, err := s.renewalsKV(ctx)
	if err != nil {
		return err
	}
	lo, hi := from.Ordinal(), to.Ordinal()
	for d := lo; d <= hi; d += daysPerLS {
		var filters []string
		for o := d; o <= min(d+daysPerLS-1, hi); o++ {
			filters = append(filters, "r."+strconv.FormatInt(o, 10)+".>")
		}
		keys, err := listKeys(ctx, kv, filters...)
		if err != nil {
			return fmt.Errorf("list renewals ending %v to %v: %w", from, to, err)
		}
		facts := make([]subscription.RenewalFact, 0, len(keys))
		for _, k := range keys {
			if !strings.HasPrefix(k, "r.") {
				continue
			}
			e, err := kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read renewal %s: %w", k, err)
			}
			var f subscription.RenewalFact
			if err := json.Unmarshal(e.Value(), &f); err != nil {
				return fmt.Errorf("read renewal %s: %w", k, err)
			}
			facts = append(facts, f)
		}
		slices.SortFunc(facts, subscription.CompareFacts)
		for _, f := range facts {
			if err := fn(f); err != nil {
				return err
			}
		}
	}
	return nil
}
