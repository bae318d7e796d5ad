// Package bounces is the bounce target: an SMTP receiver for the per-notice
// bounce addresses (see package bounce), what a bounce does to the ledger,
// the suppression list, the events and the call list, and the resend of a
// notice that did not arrive.
package bounces

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/bounce"
	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
)

// Errors that the API maps to its answers; every one is wrapped with a
// sentence that says what to do.
var (
	// ErrUnknownTag: the address is no bounce address of a notice here.
	ErrUnknownTag = errors.New("no such bounce address")
	// ErrConflict: the resend cannot go now (the address did not change,
	// the notice was sent, it was resent to this address already).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is wrong (force without a reason).
	ErrInvalid = errors.New("invalid request")
)

// Service handles returned mail and resends. Its fields are set once by the
// caller; Store must implement subscription.Suppressions and Ledger
// subscription.BounceLedger (both stores do).
type Service struct {
	Store    subscription.Store
	Ledger   subscription.Ledger
	Tagger   *bounce.Tagger
	JS       jetstream.JetStream
	Now      func() time.Time
	Location *time.Location
	Log      *zap.Logger
	// Observe, when set, is told the kind of every message handled:
	// hard, soft, auto-reply, delivered or unreadable.
	Observe func(kind string)
}

func (s *Service) suppressions() subscription.Suppressions {
	return s.Store.(subscription.Suppressions)
}

func (s *Service) bounces() subscription.BounceLedger {
	return s.Ledger.(subscription.BounceLedger)
}

// Check reports an error unless s's stores implement what bounces need.
func (s *Service) Check() error {
	if _, ok := s.Store.(subscription.Suppressions); !ok {
		return fmt.Errorf("bounces: the store keeps no suppression list")
	}
	if _, ok := s.Ledger.(subscription.BounceLedger); !ok {
		return fmt.Errorf("bounces: the ledger cannot record bounces")
	}
	return nil
}

// Accept checks a recipient of the receiver: a bounce address of the bounce
// domain whose HMAC verifies and whose notice the ledger knows. Its errors
// wrap ErrUnknownTag and name no address.
func (s *Service) Accept(ctx context.Context, rcpt string) (bounce.Tag, error) {
	tag, err := s.Tagger.Parse(rcpt)
	if err != nil {
		return bounce.Tag{}, fmt.Errorf("%w: %w", ErrUnknownTag, err)
	}
	if _, err := s.Ledger.Get(ctx, tag.Key); errors.Is(err, subscription.ErrNotFound) {
		return bounce.Tag{}, fmt.Errorf("%w: notice %s was never sent", ErrUnknownTag, tag.Key)
	} else if err != nil {
		return bounce.Tag{}, fmt.Errorf("read notice %s: %w", tag.Key, err)
	}
	return tag, nil
}

// Result is what handling one returned message did.
type Result struct {
	Kind   bounce.Kind            `json:"kind"`
	Key    subscription.NoticeKey `json:"notice_key"`
	Status string                 `json:"status,omitempty"`
	// Changed is set when the ledger entry became bounced.
	Changed bool `json:"changed"`
	// Note says in a sentence what happened.
	Note string `json:"note"`
}

// Handle reads raw, a message that came to tag's address, and acts on it:
// a hard bounce marks the notice bounced, suppresses the address and
// publishes renewals.notice.bounced; a soft one only publishes the event;
// an auto-reply or a success notice changes nothing. An error wrapping
// bounce.ErrUnreadable means raw was no readable bounce (nothing changed);
// any other error is transient: deliver the message again later.
func (s *Service) Handle(ctx context.Context, tag bounce.Tag, raw []byte) (Result, error) {
	rep, err := bounce.Parse(bytes.NewReader(raw))
	if err != nil {
		s.observe("unreadable")
		s.Log.Warn("returned mail not readable as a bounce; ignored", zap.Stringer("notice_key", tag.Key), zap.Error(err))
		return Result{Key: tag.Key}, err
	}
	res := Result{Kind: rep.Kind, Key: tag.Key, Status: rep.Status}
	switch rep.Kind {
	case bounce.AutoReply, bounce.Delivered:
		s.observe(string(rep.Kind))
		res.Note = "not a bounce (" + string(rep.Kind) + "): nothing changed"
		s.Log.Info("returned mail is not a bounce", zap.Stringer("notice_key", tag.Key), zap.String("kind", string(rep.Kind)))
		return res, nil
	case bounce.Soft:
		if err := s.publish(ctx, tag.Key, rep, subscription.Entry{Key: tag.Key}, "soft:"+rep.Status+":"+tag.Recipient); err != nil {
			return res, err
		}
		s.observe(string(rep.Kind))
		res.Note = "delivery delayed (" + rep.Reason() + "): recorded, nothing else changed"
		s.Log.Info("soft bounce", zap.Stringer("notice_key", tag.Key), zap.String("status", rep.Status))
		return res, nil
	}
	return s.hard(ctx, tag, rep)
}

// hard acts on a hard bounce: suppression first, then the ledger, then the
// event; each step is idempotent, so a message delivered again after a
// failure in between finishes the job.
func (s *Service) hard(ctx context.Context, tag bounce.Tag, rep bounce.Report) (Result, error) {
	res := Result{Kind: bounce.Hard, Key: tag.Key, Status: rep.Status}
	now := s.Now()
	sub, err := s.Store.Get(ctx, tag.Key.SubscriptionID)
	if errors.Is(err, subscription.ErrNotFound) {
		s.observe(string(bounce.Hard))
		res.Note = "the subscription was erased: nothing to record"
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("read subscription %s: %w", tag.Key.SubscriptionID, err)
	}
	// Which address bounced: the tag names it by hash; the current
	// contract manager's, or one the report names.
	addr := ""
	for _, a := range append([]string{sub.ContractManager.Email}, rep.Recipients...) {
		if a != "" && tag.Matches(s.Tagger, a) {
			addr = a
			break
		}
	}
	if addr != "" {
		sup := subscription.Suppression{SubscriptionID: sub.ID, Notice: tag.Key, Status: rep.Status, At: now}
		if err := s.suppressions().Suppress(ctx, s.Tagger.AddressHash(addr), sup); err != nil {
			return res, err
		}
	}
	e, err := s.Ledger.Get(ctx, tag.Key)
	if err != nil {
		return res, fmt.Errorf("read notice %s: %w", tag.Key, err)
	}
	// A bounce of an earlier attempt (the notice was resent since) leaves
	// the current attempt alone.
	if n := len(e.Resent); n > 0 && !strings.HasPrefix(e.Resent[n-1], tag.Recipient) {
		s.observe(string(bounce.Hard))
		res.Note = "a bounce of an earlier attempt: the address is suppressed, the notice's current attempt stands"
		return res, nil
	}
	reason := "the contract manager's address bounced: " + rep.Reason()
	e, changed, err := s.bounces().Bounce(ctx, tag.Key, rep.Status, reason, now)
	if errors.Is(err, subscription.ErrNotSent) {
		s.observe(string(bounce.Hard))
		res.Note = "the notice is not recorded as sent (it is being sent again, or failed): the address is suppressed"
		return res, nil
	}
	if err != nil {
		return res, err
	}
	res.Changed = changed
	if err := s.publish(ctx, tag.Key, rep, e, "hard:"+strconv.FormatInt(e.At.UnixNano(), 10)); err != nil {
		return res, err
	}
	if err := s.bounceCotermed(ctx, sub, tag, rep, reason, now); err != nil {
		return res, err
	}
	s.observe(string(bounce.Hard))
	res.Note = "the notice is recorded as bounced (" + rep.Reason() + ") and the address suppressed"
	if addr == "" {
		res.Note = "the notice is recorded as bounced (" + rep.Reason() + "); the address has changed since, so none was suppressed"
	}
	s.Log.Warn("notice bounced", zap.Stringer("notice_key", tag.Key), zap.String("status", rep.Status), zap.Bool("changed", changed), zap.Bool("suppressed", addr != ""))
	return res, nil
}

// bounceCotermed records the bounce on the notices that went in one email
// with tag's (a contract's co-termed subscriptions: same contract number,
// end date, milestone and contract manager; the bounce address names the
// email's first key only). Each is recorded as tag's is, if it is sent and
// was not resent since; repeats change nothing.
func (s *Service) bounceCotermed(ctx context.Context, sub subscription.Subscription, tag bounce.Tag, rep bounce.Report, reason string, now time.Time) error {
	if sub.ContractNumber == "" {
		return nil
	}
	var keys []subscription.NoticeKey
	err := s.Store.EndingBetween(ctx, tag.Key.EndDate, tag.Key.EndDate, func(o subscription.Subscription) error {
		if o.ID != sub.ID && o.ContractNumber == sub.ContractNumber &&
			strings.EqualFold(strings.TrimSpace(o.ContractManager.Email), strings.TrimSpace(sub.ContractManager.Email)) {
			keys = append(keys, subscription.NoticeKey{SubscriptionID: o.ID, EndDate: tag.Key.EndDate, Milestone: tag.Key.Milestone})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the contract of %s: %w", tag.Key, err)
	}
	for _, k := range keys {
		e, err := s.Ledger.Get(ctx, k)
		if errors.Is(err, subscription.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read notice %s: %w", k, err)
		}
		if n := len(e.Resent); n > 0 && !strings.HasPrefix(e.Resent[n-1], tag.Recipient) {
			continue
		}
		e, changed, err := s.bounces().Bounce(ctx, k, rep.Status, reason, now)
		if errors.Is(err, subscription.ErrNotSent) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.publish(ctx, k, rep, e, "hard:"+strconv.FormatInt(e.At.UnixNano(), 10)); err != nil {
			return err
		}
		s.Log.Warn("notice bounced with its contract's email", zap.Stringer("notice_key", k), zap.String("status", rep.Status), zap.Bool("changed", changed))
	}
	return nil
}

// publish emits renewals.notice.bounced; id makes a repeat a no-op in the
// stream.
func (s *Service) publish(ctx context.Context, key subscription.NoticeKey, rep bounce.Report, e subscription.Entry, id string) error {
	kind := "hard"
	if rep.Kind == bounce.Soft {
		kind = "soft"
	}
	reason := "the contract manager's address bounced: " + rep.Reason()
	if kind == "soft" {
		reason = "delivery delayed: " + rep.Reason()
	}
	at := cmp.Or(e.At, s.Now())
	ev, err := event.New(event.SubjectBounced, key.String(), at, event.NoticeBounced{
		NoticeOutcome: event.NoticeOutcome{
			NoticeKey: key, SubscriptionID: key.SubscriptionID, EndDate: key.EndDate, Milestone: key.Milestone,
			Outcome: subscription.OutcomeBounced, Reason: reason, Role: subscription.RoleContractManager,
			Attempts: e.Attempts,
		},
		Status: rep.Status, Kind: kind,
	})
	if err != nil {
		return err
	}
	if _, err := natsbus.Publish(ctx, s.JS, event.SubjectBounced, ev, key.String()+":bounced:"+id); err != nil {
		return fmt.Errorf("publish bounce of %s: %w", key, err)
	}
	return nil
}

func (s *Service) observe(kind string) {
	if s.Observe != nil {
		s.Observe(kind)
	}
}

// Feed handles a saved message (`renewals bounce FILE.eml`): its bounce
// address is read from the headers that carry the envelope recipient (To,
// Delivered-To, X-Original-To, Envelope-To), else from anywhere in the
// message (the returned message's Return-Path). An error wrapping
// ErrUnknownTag means no verified bounce address was found.
func (s *Service) Feed(ctx context.Context, raw []byte) (Result, error) {
	var candidates []string
	if m, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		for _, h := range []string{"X-Original-To", "Delivered-To", "Envelope-To", "To"} {
			if list, err := mail.ParseAddressList(m.Header.Get(h)); err == nil {
				for _, a := range list {
					candidates = append(candidates, a.Address)
				}
			}
		}
	}
	for _, m := range bounceAddr.FindAll(raw, 20) {
		candidates = append(candidates, string(m))
	}
	var firstErr error
	for _, c := range candidates {
		tag, err := s.Accept(ctx, c)
		if err == nil {
			return s.Handle(ctx, tag, raw)
		}
		if !errors.Is(err, ErrUnknownTag) {
			return Result{}, err
		}
		if firstErr == nil && !errors.Is(err, bounce.ErrForeignDomain) && !errors.Is(err, bounce.ErrNoTag) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return Result{}, fmt.Errorf("the message's bounce address does not verify (%w): it was not made by this server, or was changed", firstErr)
	}
	return Result{}, fmt.Errorf("%w: the message names no bounce address of %s (bounce+...@%s): feed the bounce as it came back, headers included", ErrUnknownTag, s.Tagger.Domain, s.Tagger.Domain)
}

var bounceAddr = regexp.MustCompile(`(?i)bounce\+[A-Za-z0-9=_-]+@[A-Za-z0-9.-]+`)

// Suppressed is the notifier's check before a send: the reason, e.g.
// "address bounced on 3 Dec 2026", when the contract manager's address is
// on the suppression list.
func (s *Service) Suppressed(ctx context.Context, sub subscription.Subscription) (string, error) {
	reasons, err := s.SuppressedMany(ctx, []subscription.Subscription{sub})
	if err != nil {
		return "", err
	}
	return reasons[0], nil
}

// SuppressedMany is Suppressed for each of subs, in one store call:
// reasons[i] answers subs[i].
func (s *Service) SuppressedMany(ctx context.Context, subs []subscription.Subscription) (reasons []string, err error) {
	reasons = make([]string, len(subs))
	var addrs []string
	var of []int
	for i, sub := range subs {
		if sub.ContractManager.Email != "" {
			addrs = append(addrs, s.Tagger.AddressHash(sub.ContractManager.Email))
			of = append(of, i)
		}
	}
	if len(addrs) == 0 {
		return reasons, nil
	}
	sups, found, err := s.suppressions().SuppressedMany(ctx, addrs)
	if err != nil {
		return nil, err
	}
	for j, i := range of {
		if found[j] {
			reasons[i] = "address bounced on " + sups[j].At.In(subs[i].Location(s.loc())).Format("2 Jan 2006")
		}
	}
	return reasons, nil
}

func (s *Service) loc() *time.Location {
	if s.Location == nil {
		return time.UTC
	}
	return s.Location
}
