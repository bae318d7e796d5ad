package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/subscription"
)

// Ledger entry hash fields.
const (
	fOutcome   = "o"
	fReason    = "r"
	fRole      = "ro"
	fAt        = "at"
	fAttempts  = "n"
	fAmbiguous = "amb"
	fToken     = "tok"
	fLease     = "lease" // unix milliseconds at which the claim runs out
	fConfirmed = "ctok"  // the token whose Confirm recorded the outcome
	fBegun     = "snd"   // set by Begin: the holder's send may have started
)

// claimScript claims a batch of notices: KEYS, for each notice, its entry
// and its subscription's set of notice keys; ARGV now ms, lease ms, then for
// each notice its token and notice key. Returns, for each, "ok", "sent" or
// "claimed". A claim over a lease that ran out marks the entry ambiguous when
// its holder had begun to send.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local until_ms = now + tonumber(ARGV[2])
local function claim(entry, set, token, key)
  local e = redis.call('HMGET', entry, 'o', 'tok', 'lease', 'snd', 'n')
  if e[1] == 'sent' or e[1] == 'bounced' then return 'sent' end
  if e[2] and e[2] ~= '' then
    if e[2] == token then
      redis.call('HSET', entry, 'lease', until_ms)
      return 'ok'
    end
    if now < (tonumber(e[3]) or 0) then return 'claimed' end
    if e[4] == '1' then redis.call('HSET', entry, 'amb', '1') end
    redis.call('HDEL', entry, 'snd')
  end
  redis.call('HSET', entry, 'tok', token, 'lease', until_ms, 'n', (tonumber(e[5]) or 0) + 1)
  redis.call('SADD', set, key)
  return 'ok'
end
local out = {}
for i = 1, #KEYS / 2 do
  out[i] = claim(KEYS[2*i-1], KEYS[2*i], ARGV[2*i+1], ARGV[2*i+2])
end
return out
`)

// renewScript: KEYS entry; ARGV token, lease end in unix ms, "1" to mark
// the send as begun. Returns "ok" or "lost".
var renewScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[1] then return 'lost' end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'lease', ARGV[2], 'snd', '1')
else
  redis.call('HSET', KEYS[1], 'lease', ARGV[2])
end
return 'ok'
`)

// releaseScript: KEYS entry; ARGV token, "1" when ambiguous, reason.
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'tok') ~= ARGV[1] then return 'lost' end
redis.call('HDEL', KEYS[1], 'tok', 'lease', 'snd')
redis.call('HSET', KEYS[1], 'r', ARGV[3])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'amb', '1') end
return 'ok'
`)

// confirmScript confirms a batch of notices: KEYS their entries; ARGV, six
// for each: token, outcome, reason, role, at, "1" when ambiguous. Returns,
// for each, "lost", or the entry's fields as confirmFields lists them. A
// repeat by the token that confirmed, for the same outcome, with no claim
// since (a retry whose first reply was lost) returns the entry unchanged.
var confirmScript = redis.NewScript(`
local function confirm(entry, token, o, r, ro, at, amb)
  local e = redis.call('HMGET', entry, 'tok', 'ctok', 'o', 'r', 'ro', 'at', 'n', 'amb', 'st', 'hist', 'rs')
  if e[1] ~= token then
    if e[1] or e[2] ~= token or e[3] ~= o then return 'lost' end
    return {e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11]}
  end
  redis.call('HDEL', entry, 'tok', 'lease', 'snd')
  if amb == '1' then e[8] = '1' end
  if e[8] then
    redis.call('HSET', entry, 'o', o, 'r', r, 'ro', ro, 'at', at, 'ctok', token, 'amb', e[8])
  else
    redis.call('HSET', entry, 'o', o, 'r', r, 'ro', ro, 'at', at, 'ctok', token)
  end
  return {o, r, ro, at, e[7], e[8], e[9], e[10], e[11]}
end
local out = {}
for i = 1, #KEYS do
  local a = (i-1)*6
  out[i] = confirm(KEYS[i], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4], ARGV[a+5], ARGV[a+6])
end
return out
`)

// confirmFields are the fields confirmScript returns, in order.
var confirmFields = [...]string{fOutcome, fReason, fRole, fAt, fAttempts, fAmbiguous, fStatus, fHistory, fResent}

func checkToken(op string, key subscription.NoticeKey, token string) error {
	if token == "" {
		return fmt.Errorf("%s notice %s: empty claim token", op, key)
	}
	if key.SubscriptionID == "" || key.EndDate.IsZero() || key.Milestone == 0 {
		return fmt.Errorf("%s notice %s: incomplete notice key", op, key)
	}
	return nil
}

// Claim takes the notice for token until now+lease, atomically in one script.
// It returns an error wrapping subscription.ErrAlreadySent when the notice
// was sent, or subscription.ErrClaimed while another token's lease is live
// (a lease ending exactly at now has run out). Claiming again with the same
// token renews the lease without counting an attempt; any other successful
// claim counts one, and one that takes over a lapsed lease whose holder had
// begun to send (see Begin) marks the entry ambiguous.
func (l *Ledger) Claim(ctx context.Context, key subscription.NoticeKey, token string, now time.Time, lease time.Duration) error {
	if err := checkClaim(key, token, lease); err != nil {
		return err
	}
	res, err := claimScript.Run(ctx, l.hot, []string{noticeKey(key), noticesKey(key.SubscriptionID)},
		now.UnixMilli(), lease.Milliseconds(), token, key.String()).StringSlice()
	if err == nil && len(res) != 1 {
		err = fmt.Errorf("script replied %d results, want 1", len(res))
	}
	if err != nil {
		return fmt.Errorf("claim notice %s: %w", key, err)
	}
	return claimResult(key, res[0])
}

func checkClaim(key subscription.NoticeKey, token string, lease time.Duration) error {
	if err := checkToken("claim", key, token); err != nil {
		return err
	}
	if lease <= 0 {
		return fmt.Errorf("claim notice %s: lease %v is not positive", key, lease)
	}
	return nil
}

// claimResult turns claimScript's reply for key into Claim's error.
func claimResult(key subscription.NoticeKey, res string) error {
	switch res {
	case "ok":
		return nil
	case "sent":
		return fmt.Errorf("claim notice %s: %w", key, subscription.ErrAlreadySent)
	case "claimed":
		return fmt.Errorf("claim notice %s: %w", key, subscription.ErrClaimed)
	}
	return fmt.Errorf("claim notice %s: unexpected script reply %q", key, res)
}

// ClaimMany claims every notice of the batch in one run of Claim's script:
// one round trip, and one script call for them all.
func (l *Ledger) ClaimMany(ctx context.Context, claims []subscription.Claim, now time.Time, lease time.Duration) []error {
	errs := make([]error, len(claims))
	var (
		keys []string
		args = []any{now.UnixMilli(), lease.Milliseconds()}
		at   []int // the claims sent, by position in claims
	)
	for i, c := range claims {
		if errs[i] = checkClaim(c.Key, c.Token, lease); errs[i] == nil {
			keys = append(keys, noticeKey(c.Key), noticesKey(c.Key.SubscriptionID))
			args = append(args, c.Token, c.Key.String())
			at = append(at, i)
		}
	}
	if len(at) == 0 {
		return errs
	}
	res, err := claimScript.Run(ctx, l.c, keys, args...).StringSlice()
	if err == nil && len(res) != len(at) {
		err = fmt.Errorf("script replied %d results, want %d", len(res), len(at))
	}
	for j, i := range at {
		if err != nil {
			errs[i] = fmt.Errorf("claim notice %s: %w", claims[i].Key, err)
			continue
		}
		errs[i] = claimResult(claims[i].Key, res[j])
	}
	return errs
}

// Renew extends token's claim to now+lease. It returns an error wrapping
// subscription.ErrLostClaim when token no longer holds the claim.
func (l *Ledger) Renew(ctx context.Context, key subscription.NoticeKey, token string, now time.Time, lease time.Duration) error {
	return l.renew(ctx, "renew", key, token, now, lease, false)
}

// Begin is Renew that also records that token's send is starting: a later
// takeover of the lapsed claim marks the entry ambiguous, since the email
// may have gone. Release and Confirm clear the mark.
func (l *Ledger) Begin(ctx context.Context, key subscription.NoticeKey, token string, now time.Time, lease time.Duration) error {
	return l.renew(ctx, "begin send of", key, token, now, lease, true)
}

func (l *Ledger) renew(ctx context.Context, op string, key subscription.NoticeKey, token string, now time.Time, lease time.Duration, begin bool) error {
	if err := checkToken(op, key, token); err != nil {
		return err
	}
	if lease <= 0 {
		return fmt.Errorf("%s notice %s: lease %v is not positive", op, key, lease)
	}
	args := []any{token, now.UnixMilli() + lease.Milliseconds(), flag(begin)}
	var res string
	var err error
	if begin && l.waiting() {
		// The send starts after this: a Begin only the primary held would,
		// after a failover, let the next claim send again unflagged.
		pipe := l.c.Pipeline()
		cmd := renewScript.Eval(ctx, pipe, []string{noticeKey(key)}, args...)
		wait := pipe.Do(ctx, "WAIT", 1, ReplicaWait.Milliseconds())
		_, _ = pipe.Exec(ctx) // each command's error is read below
		if res, err = cmd.Text(); err == nil && res == "ok" {
			err = l.replicated(ctx, wait)
		}
	} else {
		res, err = renewScript.Run(ctx, l.hot, []string{noticeKey(key)}, args...).Text()
	}
	if err != nil {
		return fmt.Errorf("%s notice %s: %w", op, key, err)
	}
	if res != "ok" {
		return fmt.Errorf("%s notice %s: %w", op, key, subscription.ErrLostClaim)
	}
	return nil
}

// Release ends token's claim without an outcome, so another claim may take
// the notice at once; ambiguous marks the entry for good. It returns an error
// wrapping subscription.ErrLostClaim when token does not hold the claim
// (including when the notice was never claimed).
func (l *Ledger) Release(ctx context.Context, key subscription.NoticeKey, token string, ambiguous bool, reason string) error {
	if err := checkToken("release", key, token); err != nil {
		return err
	}
	res, err := releaseScript.Run(ctx, l.hot, []string{noticeKey(key)}, token, flag(ambiguous), reason).Text()
	if err != nil {
		return fmt.Errorf("release notice %s: %w", key, err)
	}
	if res != "ok" {
		return fmt.Errorf("release notice %s: %w", key, subscription.ErrLostClaim)
	}
	return nil
}

// Confirm records e's Outcome, Reason, Role and At under token's claim, ends
// the claim and returns the stored entry, read in the same script. Repeated
// by the token that confirmed, for the same outcome and before any other
// claim, it changes nothing and returns the entry: a retry whose first reply
// was lost learns what it recorded.
// e.Ambiguous marks the entry ambiguous; an entry already marked stays so.
// e.Key and e.Attempts are ignored: the ledger keeps them. It returns an
// error wrapping subscription.ErrLostClaim when token does not hold the claim.
func (l *Ledger) Confirm(ctx context.Context, key subscription.NoticeKey, token string, e subscription.Entry) (subscription.Entry, error) {
	if err := checkConfirm(key, token, e); err != nil {
		return subscription.Entry{}, err
	}
	res, err := l.confirmRun(ctx, l.hot, []string{noticeKey(key)}, confirmArgs(nil, token, e))
	if err == nil && len(res) != 1 {
		err = fmt.Errorf("script replied %d results, want 1", len(res))
	}
	if err != nil {
		return subscription.Entry{}, fmt.Errorf("confirm notice %s: %w", key, err)
	}
	return confirmResult(key, res[0])
}

func checkConfirm(key subscription.NoticeKey, token string, e subscription.Entry) error {
	if err := checkToken("confirm", key, token); err != nil {
		return err
	}
	if e.Outcome == "" {
		return fmt.Errorf("confirm notice %s: no outcome", key)
	}
	return nil
}

// confirmArgs appends confirmScript's six arguments for one notice to args.
func confirmArgs(args []any, token string, e subscription.Entry) []any {
	at := ""
	if !e.At.IsZero() {
		at = e.At.Format(time.RFC3339Nano)
	}
	return append(args, token, string(e.Outcome), e.Reason, string(e.Role), at, flag(e.Ambiguous))
}

// confirmResult turns confirmScript's reply for key into Confirm's results.
func confirmResult(key subscription.NoticeKey, res any) (subscription.Entry, error) {
	vals, ok := res.([]any)
	if !ok {
		if res == "lost" {
			return subscription.Entry{}, fmt.Errorf("confirm notice %s: %w", key, subscription.ErrLostClaim)
		}
		return subscription.Entry{}, fmt.Errorf("confirm notice %s: unexpected script reply %v", key, res)
	}
	if len(vals) != len(confirmFields) {
		return subscription.Entry{}, fmt.Errorf("confirm notice %s: script replied %d fields, want %d", key, len(vals), len(confirmFields))
	}
	m := make(map[string]string, len(confirmFields))
	for i, f := range confirmFields {
		if v, ok := vals[i].(string); ok {
			m[f] = v
		}
	}
	stored, err := entry(key, m)
	if err != nil {
		return subscription.Entry{}, fmt.Errorf("confirm notice %s: recorded, but: %w", key, err)
	}
	return stored, nil
}

// confirmRun runs confirmScript over keys on c, or, when the ledger waits
// for a replica (waitReplica, and the primary was not lately found without
// one), runs it and then WAIT 1 on the same connection (one pipeline), so
// that the confirms are on a replica before they are reported recorded:
// Redis replicates asynchronously, and a confirm only the primary held is
// lost when Sentinel promotes a replica. When no replica acknowledges
// within ReplicaWait though one is connected, it returns an error: the
// notifier confirms again (a repeat is recognised), on the new primary
// after a failover, and nothing is acknowledged that a failover can undo.
// When the primary has no replica connected (the one promoted after a
// failover, until the old primary returns as its replica), there is
// nothing to wait for: the confirms count as recorded, and those of the
// next replicaRecheck skip the wait.
func (l *Ledger) confirmRun(ctx context.Context, c redis.Scripter, keys []string, args []any) ([]any, error) {
	if !l.waiting() {
		return confirmScript.Run(ctx, c, keys, args...).Slice()
	}
	pipe := l.c.Pipeline()
	cmd := confirmScript.Eval(ctx, pipe, keys, args...)
	wait := pipe.Do(ctx, "WAIT", 1, ReplicaWait.Milliseconds())
	_, _ = pipe.Exec(ctx) // each command's error is read below
	res, err := cmd.Slice()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(res, func(r any) bool { return r != "lost" }) {
		return res, nil // nothing was written
	}
	if err := l.replicated(ctx, wait); err != nil {
		return nil, err
	}
	return res, nil
}

// waiting reports whether writes wait for a replica now.
func (l *Ledger) waiting() bool {
	return l.waitReplica && time.Now().UnixNano() >= l.noReplicaUntil.Load()
}

// replicated reads the answer of a WAIT 1: nil when a replica has the
// writes, or when the primary has no replica connected (then the writes of
// the next replicaRecheck do not wait).
func (l *Ledger) replicated(ctx context.Context, wait *redis.Cmd) error {
	n, err := wait.Int()
	if err == nil && n >= 1 {
		return nil
	}
	if err == nil && !hasReplicas(ctx, l.c) {
		l.noReplicaUntil.Store(time.Now().Add(replicaRecheck).UnixNano())
		return nil
	}
	return fmt.Errorf("recorded on the primary but on no replica within %v (WAIT 1: %d, %v)", ReplicaWait, n, err)
}

// replicaRecheck is how long confirms skip WAIT once the primary was found
// without replicas.
const replicaRecheck = 5 * time.Second

// ConfirmMany confirms every notice of the batch in one run of Confirm's
// script: one round trip, and one script call for them all.
func (l *Ledger) ConfirmMany(ctx context.Context, cs []subscription.Confirmation) ([]subscription.Entry, []error) {
	entries, errs := make([]subscription.Entry, len(cs)), make([]error, len(cs))
	var (
		keys []string
		args []any
		at   []int
	)
	for i, c := range cs {
		if errs[i] = checkConfirm(c.Key, c.Token, c.Entry); errs[i] == nil {
			keys = append(keys, noticeKey(c.Key))
			args = confirmArgs(args, c.Token, c.Entry)
			at = append(at, i)
		}
	}
	if len(at) == 0 {
		return entries, errs
	}
	res, err := l.confirmRun(ctx, l.c, keys, args)
	if err == nil && len(res) != len(at) {
		err = fmt.Errorf("script replied %d results, want %d", len(res), len(at))
	}
	for j, i := range at {
		if err != nil {
			errs[i] = fmt.Errorf("confirm notice %s: %w", cs[i].Key, err)
			continue
		}
		entries[i], errs[i] = confirmResult(cs[i].Key, res[j])
	}
	return entries, errs
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Sent reports, for every one of keys, whether it was sent, in one pipelined
// round trip.
func (l *Ledger) Sent(ctx context.Context, keys []subscription.NoticeKey) (map[subscription.NoticeKey]bool, error) {
	out := make(map[subscription.NoticeKey]bool, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	pipe := l.c.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGet(ctx, noticeKey(k), fOutcome)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read sent notices: %w", err)
	}
	for i, k := range keys {
		out[k] = subscription.Final(subscription.Outcome(cmds[i].Val()))
	}
	return out, nil
}

// Get returns the entry for key, or an error wrapping subscription.ErrNotFound
// when the notice was never claimed.
func (l *Ledger) Get(ctx context.Context, key subscription.NoticeKey) (subscription.Entry, error) {
	m, err := l.c.HGetAll(ctx, noticeKey(key)).Result()
	if err != nil {
		return subscription.Entry{}, fmt.Errorf("get notice %s: %w", key, err)
	}
	if len(m) == 0 {
		return subscription.Entry{}, fmt.Errorf("get notice %s: %w", key, subscription.ErrNotFound)
	}
	return entry(key, m)
}

func entry(key subscription.NoticeKey, m map[string]string) (subscription.Entry, error) {
	e := subscription.Entry{
		Key: key, Outcome: subscription.Outcome(m[fOutcome]), Reason: m[fReason],
		Role: subscription.Role(m[fRole]), Ambiguous: m[fAmbiguous] == "1",
	}
	if v := m[fAttempts]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return e, fmt.Errorf("notice %s: attempts %q: %w", key, v, err)
		}
		e.Attempts = n
	}
	if err := bounceFields(&e, m); err != nil {
		return e, err
	}
	if v := m[fAt]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return e, fmt.Errorf("notice %s: time %q: %w", key, v, err)
		}
		e.At = t
	}
	return e, nil
}

// List returns every entry of the subscription, ordered by
// subscription.CompareKeys (end date, then milestone as a number), and an
// empty list when it has none.
func (l *Ledger) List(ctx context.Context, subscriptionID string) ([]subscription.Entry, error) {
	members, err := l.c.SMembers(ctx, noticesKey(subscriptionID)).Result()
	if err != nil {
		return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
	}
	keys := make([]subscription.NoticeKey, 0, len(members))
	for _, m := range members {
		k, err := subscription.ParseNoticeKey(m)
		if err != nil {
			return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, subscription.CompareKeys)
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := l.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGetAll(ctx, noticeKey(k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
	}
	out := make([]subscription.Entry, 0, len(keys))
	for i, k := range keys {
		if len(cmds[i].Val()) == 0 {
			continue
		}
		e, err := entry(k, cmds[i].Val())
		if err != nil {
			return nil, fmt.Errorf("list notices of %s: %w", subscriptionID, err)
		}
		out = append(out, e)
	}
	return out, nil
}
