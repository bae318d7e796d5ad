package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/subscription"
)

// The bounce ledger's entry fields, and the suppression list's keys:
//
//	renewals:suppress:<address hash>   hash: field <subscription id>, value the Suppression's JSON
//	renewals:suppressed:<id>           set: the address hashes the subscription has records under, for Erase
const (
	fStatus  = "st"   // a bounced notice's status code
	fHistory = "hist" // JSON list of subscription.Attempt
	fResent  = "rs"   // JSON list of recipient hashes
)

func suppressKey(addr string) string { return Prefix + "suppress:" + addr }
func suppressedKey(id string) string { return Prefix + "suppressed:" + id }
func attemptOf(e subscription.Entry) subscription.Attempt {
	return subscription.Attempt{Outcome: e.Outcome, Reason: e.Reason, Status: e.Status, Role: e.Role, At: e.At}
}

var (
	_ subscription.BounceLedger = (*Ledger)(nil)
	_ subscription.Suppressions = (*Store)(nil)
)

// bounceFields reads the bounce ledger's fields of a stored entry.
func bounceFields(e *subscription.Entry, m map[string]string) error {
	e.Status = m[fStatus]
	if v := m[fHistory]; v != "" {
		if err := json.Unmarshal([]byte(v), &e.History); err != nil {
			return fmt.Errorf("notice %s: history: %w", e.Key, err)
		}
	}
	if v := m[fResent]; v != "" {
		if err := json.Unmarshal([]byte(v), &e.Resent); err != nil {
			return fmt.Errorf("notice %s: resent: %w", e.Key, err)
		}
	}
	return nil
}

// change runs fn on the entry of key under WATCH, so that a concurrent claim
// or confirm makes the transaction fail and fn run again on what it wrote.
// fn returns the fields to set, or nil to write nothing.
func (l *Ledger) change(ctx context.Context, op string, key subscription.NoticeKey, fn func(e subscription.Entry, m map[string]string) (map[string]any, error)) error {
	k := noticeKey(key)
	for range 50 {
		wrote := false
		err := l.c.Watch(ctx, func(tx *redis.Tx) error {
			m, err := tx.HGetAll(ctx, k).Result()
			if err != nil {
				return err
			}
			if len(m) == 0 {
				return subscription.ErrNotFound
			}
			e, err := entry(key, m)
			if err != nil {
				return err
			}
			set, err := fn(e, m)
			if err != nil || set == nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, k, set)
				return nil
			})
			wrote = err == nil
			return err
		}, k)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err == nil && wrote && l.waiting() {
			// As a confirm does: a bounce or a reopen for a resend that only
			// the primary holds would be undone by a failover.
			err = l.replicated(ctx, l.c.Do(ctx, "WAIT", 1, ReplicaWait.Milliseconds()))
		}
		if err != nil {
			return fmt.Errorf("%s notice %s: %w", op, key, err)
		}
		return nil
	}
	return fmt.Errorf("%s notice %s: too many concurrent writers; try again", op, key)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v) // Attempts and strings always encode
	return string(b)
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

// Bounce turns the sent notice into a bounced one, keeping the sent outcome
// in History; see subscription.BounceLedger.
func (l *Ledger) Bounce(ctx context.Context, key subscription.NoticeKey, status, reason string, at time.Time) (subscription.Entry, bool, error) {
	changed := false
	err := l.change(ctx, "bounce", key, func(e subscription.Entry, m map[string]string) (map[string]any, error) {
		switch {
		case e.Outcome == subscription.OutcomeBounced:
			return nil, nil
		case e.Outcome != subscription.OutcomeSent || m[fToken] != "":
			return nil, subscription.ErrNotSent
		}
		changed = true
		return map[string]any{
			fHistory: jsonString(append(e.History, attemptOf(e))),
			fOutcome: string(subscription.OutcomeBounced), fStatus: status, fReason: reason, fAt: rfc3339(at),
		}, nil
	})
	if err != nil {
		return subscription.Entry{}, false, err
	}
	e, err := l.Get(ctx, key)
	return e, changed, err
}

// Reopen readies the notice for a resend to recipient; see
// subscription.BounceLedger.
func (l *Ledger) Reopen(ctx context.Context, key subscription.NoticeKey, recipient, reason string, at time.Time) (subscription.Entry, error) {
	if recipient == "" {
		return subscription.Entry{}, fmt.Errorf("reopen notice %s: no recipient hash", key)
	}
	err := l.change(ctx, "reopen", key, func(e subscription.Entry, m map[string]string) (map[string]any, error) {
		if slices.Contains(e.Resent, recipient) {
			if e.Outcome == "" {
				return nil, nil
			}
			return nil, subscription.ErrResent
		}
		lease, _ := strconv.ParseInt(m[fLease], 10, 64)
		if e.Outcome == "" || e.Outcome == subscription.OutcomeSent || e.Outcome == subscription.OutcomeSkipped ||
			m[fToken] != "" && at.UnixMilli() < lease {
			return nil, subscription.ErrNotResendable
		}
		return map[string]any{
			fHistory: jsonString(append(e.History, attemptOf(e))),
			fResent:  jsonString(append(e.Resent, recipient)),
			fOutcome: "", fStatus: "", fReason: reason, fRole: "", fConfirmed: "", fAt: rfc3339(at),
		}, nil
	})
	if err != nil {
		return subscription.Entry{}, err
	}
	return l.Get(ctx, key)
}

// Suppress records that the address with hash addr bounced for
// s.SubscriptionID, replacing that subscription's earlier record of it.
func (s *Store) Suppress(ctx context.Context, addr string, sup subscription.Suppression) error {
	if err := subscription.ValidAddressHash(addr); err != nil {
		return fmt.Errorf("suppress address: %w", err)
	}
	if err := subscription.ValidID(sup.SubscriptionID); err != nil {
		return fmt.Errorf("suppress address: %w", err)
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, suppressKey(addr), sup.SubscriptionID, jsonString(sup))
		p.SAdd(ctx, suppressedKey(sup.SubscriptionID), addr)
		return nil
	})
	if err != nil {
		return fmt.Errorf("suppress address for %s: %w", sup.SubscriptionID, err)
	}
	return nil
}

// Suppressed returns the earliest record of the address with hash addr.
func (s *Store) Suppressed(ctx context.Context, addr string) (subscription.Suppression, bool, error) {
	sups, found, err := s.SuppressedMany(ctx, []string{addr})
	if err != nil {
		return subscription.Suppression{}, false, err
	}
	return sups[0], found[0], nil
}

// SuppressedMany is Suppressed for each of addrs, in one pipelined round
// trip.
func (s *Store) SuppressedMany(ctx context.Context, addrs []string) ([]subscription.Suppression, []bool, error) {
	for _, addr := range addrs {
		if err := subscription.ValidAddressHash(addr); err != nil {
			return nil, nil, fmt.Errorf("read suppression list: %w", err)
		}
	}
	cmds := make([]*redis.MapStringStringCmd, len(addrs))
	if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, addr := range addrs {
			cmds[i] = p.HGetAll(ctx, suppressKey(addr))
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read suppression list: %w", err)
	}
	sups, found := make([]subscription.Suppression, len(addrs)), make([]bool, len(addrs))
	for i, c := range cmds {
		for _, v := range c.Val() {
			var sup subscription.Suppression
			if err := json.Unmarshal([]byte(v), &sup); err != nil {
				return nil, nil, fmt.Errorf("read suppression list: stored record: %w", err)
			}
			if !found[i] || sup.At.Before(sups[i].At) {
				sups[i], found[i] = sup, true
			}
		}
	}
	return sups, found, nil
}

// unsuppressScript: KEYS the address's hash; ARGV the address hash and the
// prefix of the per-subscription sets. Removes every record of the address.
var unsuppressScript = redis.NewScript(`
for _, id in ipairs(redis.call('HKEYS', KEYS[1])) do
  redis.call('SREM', ARGV[2] .. id, ARGV[1])
end
return redis.call('DEL', KEYS[1])
`)

// eraseSuppressionsScript: KEYS the subscription's set; ARGV the id and the
// prefix of the address hashes. Removes the subscription's records.
var eraseSuppressionsScript = redis.NewScript(`
for _, addr in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  redis.call('HDEL', ARGV[2] .. addr, ARGV[1])
end
return redis.call('DEL', KEYS[1])
`)

// Unsuppress removes every record of the address with hash addr.
func (s *Store) Unsuppress(ctx context.Context, addr string) error {
	if err := subscription.ValidAddressHash(addr); err != nil {
		return fmt.Errorf("lift suppression: %w", err)
	}
	if err := unsuppressScript.Run(ctx, s.c, []string{suppressKey(addr)}, addr, Prefix+"suppressed:").Err(); err != nil {
		return fmt.Errorf("lift suppression: %w", err)
	}
	return nil
}

// eraseSuppressions removes the subscription's records from the list; the
// AOF rewrite and snapshot of Erase then drop them from the files.
func (s *Store) eraseSuppressions(ctx context.Context, id string) error {
	if err := eraseSuppressionsScript.Run(ctx, s.c, []string{suppressedKey(id)}, id, Prefix+"suppress:").Err(); err != nil {
		return fmt.Errorf("erase subscription %s: suppression list: %w", id, err)
	}
	return nil
}
