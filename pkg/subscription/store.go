package subscription

import (
	"context"
	"errors"
	"time"
)

// Errors that callers can test for with errors.Is.
var (
	// ErrNotFound: no subscription, or no ledger entry, with that key.
	ErrNotFound = errors.New("not found")
	// ErrAlreadySent: the notice was sent and confirmed; it must not go again.
	ErrAlreadySent = errors.New("notice already sent")
	// ErrClaimed: another worker holds a live claim on the notice.
	ErrClaimed = errors.New("notice claimed by another worker")
	// ErrLostClaim: the claim's token no longer matches: the lease ran out and
	// another worker took the notice over.
	ErrLostClaim = errors.New("claim lost")
)

// UpsertResult is what an upsert did to one record.
type UpsertResult struct {
	Change Change
	// PreviousEndDate is the end date before the upsert (zero when created).
	// A different end date starts a new term: a renewal.
	PreviousEndDate Date
}

// Change is what an upsert did to one record.
type Change string

// The outcomes of an upsert.
const (
	Created   Change = "created"
	Updated   Change = "updated"
	Unchanged Change = "unchanged"
)

// Store keeps subscriptions. Implementations: the Redis store and the
// embedded JetStream key-value store; both pass the same conformance suite.
type Store interface {
	// Upsert writes each subscription by ID and reports, in order, whether it
	// was created, updated or unchanged, and its end date before. Writes are
	// batched: one call per import chunk, not one per row. When an ID repeats
	// within subs, the later record wins and each is reported against the
	// state the earlier left.
	Upsert(ctx context.Context, subs []Subscription) ([]UpsertResult, error)
	// Get returns the subscription, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (Subscription, error)
	// EndingBetween calls fn for every subscription whose end date lies in
	// [from, to], both inclusive, reading only those (through an end-date
	// index, never a scan of the whole store), in order of end date, then
	// id. It stops at fn's first error and returns it.
	EndingBetween(ctx context.Context, from, to Date, fn func(Subscription) error) error
	// Erase removes the subscription and its personal data for good, so that
	// no key, value or stored message still holds it. Returns an error
	// wrapping ErrNotFound when there is no such subscription.
	Erase(ctx context.Context, id string) error
	// Ping reports whether the store can be reached and accepts a write.
	Ping(ctx context.Context) error
}

// Outcome is the final result of handling one notice.
type Outcome string

// Outcomes of a notice. Only Sent (and Bounced, a sent notice that came
// back: see bounce.go) is final for due-ness: a notice that failed, was
// undeliverable or was skipped can fall due again on a later pass (a fixed
// address, a reactivated subscription).
const (
	OutcomeSent          Outcome = "sent"
	OutcomeSkipped       Outcome = "skipped"
	OutcomeFailed        Outcome = "failed"
	OutcomeUndeliverable Outcome = "undeliverable"
)

// Entry is the ledger's record of one notice. It holds no address or name:
// only the key, the role it went to, times and outcomes.
type Entry struct {
	Key NoticeKey `json:"notice_key"`
	// Outcome is the last final outcome; empty while only claimed.
	Outcome Outcome `json:"outcome,omitempty"`
	// Reason explains a skipped, failed or undeliverable outcome; while there
	// is no outcome, why the last attempt did not send.
	Reason string `json:"reason,omitempty"`
	// Role is who the email went to: always the contract manager.
	Role Role `json:"role,omitempty"`
	// At is when the outcome was recorded.
	At time.Time `json:"at,omitzero"`
	// Attempts counts claims taken on the notice.
	Attempts int `json:"attempts"`
	// Ambiguous is set when an attempt's outcome was unknown (the connection
	// was lost after the message data, or a worker died holding the claim),
	// so the contract manager may have received the notice twice.
	Ambiguous bool `json:"ambiguous,omitempty"`
	// Status is a bounced notice's delivery status code, e.g. "5.1.1".
	Status string `json:"status,omitempty"`
	// History holds the earlier outcomes that a bounce or a resend
	// replaced, oldest first (see BounceLedger).
	History []Attempt `json:"history,omitempty"`
	// Resent lists the keyed hashes of the recipients the notice was
	// resent to (see BounceLedger.Reopen); never an address.
	Resent []string `json:"resent,omitempty"`
}

// Claim is one notice's claim in a Ledger.ClaimMany batch.
type Claim struct {
	Key   NoticeKey
	Token string
}

// Confirmation is one notice's outcome in a Ledger.ConfirmMany batch: Entry
// under the claim held by Token.
type Confirmation struct {
	Key   NoticeKey
	Token string
	Entry Entry
}

// Ledger records what was sent, so that no notice goes twice. A send is
// claim, send, confirm: Claim takes a lease on the notice with a random token;
// after a successful send Confirm records it as sent, checking the token; a
// failed send Releases the claim so that a retry can take it. The holder
// Renews its lease while it works and calls Begin just before the send
// starts. A claim whose lease ran out may be taken over by another worker;
// when its holder had begun to send, the entry is then marked ambiguous,
// since the dead holder may have sent.
type Ledger interface {
	// Claim takes the notice for token until now+lease. It returns an error
	// wrapping ErrAlreadySent when the notice was sent (or bounced), or ErrClaimed while
	// another token's lease is live.
	Claim(ctx context.Context, key NoticeKey, token string, now time.Time, lease time.Duration) error
	// Renew extends token's claim to now+lease. It returns ErrLostClaim when
	// token no longer holds the claim.
	Renew(ctx context.Context, key NoticeKey, token string, now time.Time, lease time.Duration) error
	// Begin is Renew that also records that the send is starting, so that a
	// takeover after the lease ran out flags the entry ambiguous. A send
	// must not start when Begin fails. Release and Confirm clear the mark.
	Begin(ctx context.Context, key NoticeKey, token string, now time.Time, lease time.Duration) error
	// Release gives the claim up after a send that did not happen or whose
	// outcome is unknown (ambiguous); reason, why it did not (with no
	// address in it), stays as the entry's Reason until an outcome is
	// recorded. It returns ErrLostClaim when token no longer holds the claim.
	Release(ctx context.Context, key NoticeKey, token string, ambiguous bool, reason string) error
	// Confirm records the final outcome under the claim held by token, ends
	// the claim and returns the entry as now stored (what Get would return:
	// the attempts and the ambiguous flag are the ledger's), in the same
	// round trip. It returns ErrLostClaim when token no longer holds it. A
	// repeat by the token that confirmed, for the same outcome and before any
	// other claim (a retry whose reply was lost), returns the entry as stored
	// and changes nothing.
	Confirm(ctx context.Context, key NoticeKey, token string, e Entry) (Entry, error)
	// ClaimMany is Claim for each of claims, in as few round trips as the
	// ledger allows (one, on Redis): errs[i] is what Claim would have
	// returned for claims[i]. Each key appears at most once.
	ClaimMany(ctx context.Context, claims []Claim, now time.Time, lease time.Duration) (errs []error)
	// ConfirmMany is Confirm for each of cs, in as few round trips as the
	// ledger allows: entries[i] and errs[i] are what Confirm would have
	// returned for cs[i]. Each key appears at most once.
	ConfirmMany(ctx context.Context, cs []Confirmation) (entries []Entry, errs []error)
	// Sent reports which of keys were sent (Final: sent or bounced).
	Sent(ctx context.Context, keys []NoticeKey) (map[NoticeKey]bool, error)
	// Get returns the entry for key, or ErrNotFound.
	Get(ctx context.Context, key NoticeKey) (Entry, error)
	// List returns every entry of the subscription, ordered by key.
	List(ctx context.Context, subscriptionID string) ([]Entry, error)
}

// CallStore keeps the renewal calls of subscriptions. Both stores implement
// it. The caller and the note of every call are sealed under the
// subscription's data key, so Store.Erase takes them with the subscription.
type CallStore interface {
	// AddCall stores c under c.SubscriptionID. It returns an error
	// wrapping ErrNotFound when there is no such subscription.
	AddCall(ctx context.Context, c Call) error
	// Calls returns the subscription's calls, oldest first, with their
	// personal fields opened; none (and no error) when it has none or does
	// not exist.
	Calls(ctx context.Context, subscriptionID string) ([]Call, error)
}

// RenewalLog keeps the renewal facts that the renewals report counts.
// Both stores implement it. Adding a fact that is already there (the same
// subscription, old and new end date) changes nothing.
type RenewalLog interface {
	AddRenewals(ctx context.Context, facts []RenewalFact) error
	// RenewalsEnding calls fn for every fact whose TermEnded lies in
	// [from, to], both inclusive, ordered by TermEnded then subscription.
	// It stops at fn's first error and returns it.
	RenewalsEnding(ctx context.Context, from, to Date, fn func(RenewalFact) error) error
}
