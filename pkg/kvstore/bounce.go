package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/subscription"
)

// The suppression list lives in a stream of its own, like the data keys:
// a key-value bucket leaves purged values in its block files, while a
// message of this stream is erased with SecureDeleteMsg, which overwrites
// its bytes. One message per address hash and subscription, on subject
// renewals_suppress.<address hash>.<subscription id>: the notifier's
// look-up before each send filters on the literal hash.
const (
	SuppressStream        = "RENEWALS_SUPPRESS"
	SuppressSubjectPrefix = "renewals_suppress."
)

var (
	_ subscription.BounceLedger = (*Ledger)(nil)
	_ subscription.Suppressions = (*Store)(nil)
)

// suppressions declares the stream of the suppression list.
func suppressions(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              SuppressStream,
		Description:       "renewals: addresses that bounced, by keyed hash; erased with secure delete",
		Subjects:          []string{SuppressSubjectPrefix + "*.*"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: -1, // never replaced: a replaced message is deleted, not overwritten
		AllowDirect:       true,
		Replicas:          max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("declare stream %s: %w", SuppressStream, err)
	}
	return st, nil
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
	b, err := json.Marshal(sup)
	if err != nil {
		return fmt.Errorf("suppress address: %w", err)
	}
	subject := SuppressSubjectPrefix + addr + "." + sup.SubscriptionID
	ack, err := s.js.Publish(ctx, subject, b)
	if err != nil {
		return fmt.Errorf("suppress address for %s: %w", sup.SubscriptionID, err)
	}
	// Older records of the same pair go, so that one stays.
	return s.purgeSubject(ctx, subject, ack.Sequence)
}

// purgeSubject securely deletes every message on subject (which may hold
// wildcards) but the one at keep (0: all).
func (s *Store) purgeSubject(ctx context.Context, subject string, keep uint64) error {
	for range 10000 {
		m, err := s.lastOf(ctx, subject, keep)
		if err != nil || m == nil {
			return err
		}
		if err := s.suppress.SecureDeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("delete suppression record: %w", err)
		}
	}
	return fmt.Errorf("delete suppression records of %s: too many", subject)
}

// lastOf returns the last message on subject other than the one at keep, or
// nil when there is none.
func (s *Store) lastOf(ctx context.Context, subject string, keep uint64) (*jetstream.RawStreamMsg, error) {
	if keep == 0 {
		m, err := s.suppress.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read suppression list: %w", err)
		}
		return m, nil
	}
	// The pair's subject has no wildcard: walk its messages from the first.
	info, err := s.suppress.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, fmt.Errorf("read suppression list: %w", err)
	}
	if info.State.Subjects[subject] <= 1 {
		return nil, nil
	}
	m, err := s.suppress.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subject))
	if err != nil {
		return nil, fmt.Errorf("read suppression list: %w", err)
	}
	if m.Sequence == keep {
		return nil, nil
	}
	return m, nil
}

// Suppressed returns the earliest record of the address with hash addr.
func (s *Store) Suppressed(ctx context.Context, addr string) (subscription.Suppression, bool, error) {
	if err := subscription.ValidAddressHash(addr); err != nil {
		return subscription.Suppression{}, false, fmt.Errorf("read suppression list: %w", err)
	}
	var best subscription.Suppression
	found := false
	// A few records at most: one per subscription that shares the address.
	for seq := uint64(1); ; {
		m, err := s.suppress.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(SuppressSubjectPrefix+addr+".*"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return best, found, nil
		}
		if err != nil {
			return subscription.Suppression{}, false, fmt.Errorf("read suppression list: %w", err)
		}
		var sup subscription.Suppression
		if err := json.Unmarshal(m.Data, &sup); err != nil {
			return subscription.Suppression{}, false, fmt.Errorf("read suppression list: stored record: %w", err)
		}
		if !found || sup.At.Before(best.At) {
			best, found = sup, true
		}
		seq = m.Sequence + 1
	}
}

// SuppressedMany is Suppressed for each of addrs, up to 32 at a time.
func (s *Store) SuppressedMany(ctx context.Context, addrs []string) ([]subscription.Suppression, []bool, error) {
	sups, found, errs := make([]subscription.Suppression, len(addrs)), make([]bool, len(addrs)), make([]error, len(addrs))
	each(len(addrs), func(i int) { sups[i], found[i], errs[i] = s.Suppressed(ctx, addrs[i]) })
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return sups, found, nil
}

// Unsuppress removes every record of the address with hash addr.
func (s *Store) Unsuppress(ctx context.Context, addr string) error {
	if err := subscription.ValidAddressHash(addr); err != nil {
		return fmt.Errorf("lift suppression: %w", err)
	}
	return s.purgeSubject(ctx, SuppressSubjectPrefix+addr+".*", 0)
}

// eraseSuppressions removes the subscription's records from the list.
func (s *Store) eraseSuppressions(ctx context.Context, id string) error {
	if err := s.purgeSubject(ctx, SuppressSubjectPrefix+"*."+id, 0); err != nil {
		return fmt.Errorf("erase subscription %s: %w", id, err)
	}
	return nil
}

// Bounce turns the sent notice into a bounced one, keeping the sent outcome
// in History; see subscription.BounceLedger.
func (l *Ledger) Bounce(ctx context.Context, key subscription.NoticeKey, status, reason string, at time.Time) (subscription.Entry, bool, error) {
	var unchanged *state
	st, err := l.updateState(ctx, "bounce", key, func(cur *state) (*state, error) {
		switch {
		case cur == nil:
			return nil, subscription.ErrNotFound
		case cur.Outcome == subscription.OutcomeBounced:
			unchanged = cur
			return nil, nil
		case cur.Outcome != subscription.OutcomeSent || cur.Token != "":
			return nil, subscription.ErrNotSent
		}
		next := *cur
		next.History = append(slices.Clip(cur.History), subscription.Attempt{Outcome: cur.Outcome, Reason: cur.Reason, Role: cur.Role, At: cur.At})
		next.Outcome, next.Status, next.Reason, next.At = subscription.OutcomeBounced, status, reason, at
		return &next, nil
	})
	if err != nil {
		return subscription.Entry{}, false, err
	}
	if unchanged != nil {
		return unchanged.entry(key), false, nil
	}
	if st == nil {
		return subscription.Entry{}, false, fmt.Errorf("bounce notice %s: %w", key, subscription.ErrNotFound)
	}
	return st.entry(key), true, nil
}

// Reopen readies the notice for a resend to recipient; see
// subscription.BounceLedger.
func (l *Ledger) Reopen(ctx context.Context, key subscription.NoticeKey, recipient, reason string, at time.Time) (subscription.Entry, error) {
	if recipient == "" {
		return subscription.Entry{}, fmt.Errorf("reopen notice %s: no recipient hash", key)
	}
	var unchanged *state
	st, err := l.updateState(ctx, "reopen", key, func(cur *state) (*state, error) {
		if cur == nil {
			return nil, subscription.ErrNotFound
		}
		if slices.Contains(cur.Resent, recipient) {
			if cur.Outcome == "" {
				unchanged = cur
				return nil, nil
			}
			return nil, subscription.ErrResent
		}
		if cur.Outcome == "" || cur.Outcome == subscription.OutcomeSent || cur.Outcome == subscription.OutcomeSkipped ||
			cur.Token != "" && at.UnixMilli() < cur.LeaseUntilMs {
			return nil, subscription.ErrNotResendable
		}
		next := *cur
		next.History = append(slices.Clip(cur.History), subscription.Attempt{Outcome: cur.Outcome, Reason: cur.Reason, Status: cur.Status, Role: cur.Role, At: cur.At})
		next.Resent = append(slices.Clip(cur.Resent), recipient)
		next.Outcome, next.Status, next.Reason, next.Role, next.ConfirmedBy = "", "", reason, "", ""
		next.At = at
		return &next, nil
	})
	if err != nil {
		return subscription.Entry{}, err
	}
	if unchanged != nil {
		return unchanged.entry(key), nil
	}
	if st == nil {
		return subscription.Entry{}, fmt.Errorf("reopen notice %s: %w", key, subscription.ErrNotFound)
	}
	return st.entry(key), nil
}
