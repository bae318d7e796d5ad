package subscription

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// OutcomeBounced: the notice was sent, and the contract manager's mail
// system sent it back later with a permanent failure (a hard bounce). Like
// Sent it is final for due-ness: the scheduler does not send the notice
// again; a person resends it once the address is fixed.
const OutcomeBounced Outcome = "bounced"

// Final reports whether an outcome ends a notice for good: sent, or sent
// and bounced. Claim refuses such a notice and Sent reports it as sent.
func Final(o Outcome) bool { return o == OutcomeSent || o == OutcomeBounced }

// Errors of the bounce ledger and the resend.
var (
	// ErrNotSent: the notice has no sent outcome that a bounce could undo.
	ErrNotSent = errors.New("notice not sent")
	// ErrResent: the notice was already resent to that recipient.
	ErrResent = errors.New("notice already resent to this recipient")
	// ErrNotResendable: the notice is sent (and not bounced), or claimed
	// by a worker right now: nothing to resend.
	ErrNotResendable = errors.New("notice cannot be resent")
)

// Attempt is an earlier outcome of a notice, kept in its entry's History
// when a bounce or a resend replaced it.
type Attempt struct {
	Outcome Outcome   `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	Status  string    `json:"status,omitempty"`
	Role    Role      `json:"role,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// BounceLedger is the part of the ledger that bounces and resends change.
// Both ledgers (Redis and the embedded key-value store) implement it.
type BounceLedger interface {
	// Bounce records a hard bounce of a sent notice: the sent outcome moves
	// into History and the entry becomes bounced with status (e.g. "5.1.1"),
	// reason and at. It reports whether it changed the entry: a repeat for a
	// bounced entry changes nothing and reports false. It returns an error
	// wrapping ErrNotFound when the notice has no entry and ErrNotSent when
	// its outcome is not sent (claimed, failed, skipped).
	Bounce(ctx context.Context, key NoticeKey, status, reason string, at time.Time) (Entry, bool, error)
	// Reopen readies a bounced, failed or undeliverable notice to be sent
	// again to recipient (a keyed hash naming the notice and the address,
	// never the address): its outcome moves into History, the outcome is
	// cleared (Reason becomes reason, At at) so that Claim takes the notice,
	// and recipient joins Resent. Reopening again for the same recipient while the notice is
	// still open changes nothing and succeeds (a retried request); once it
	// has an outcome again, it returns ErrResent. It returns ErrNotFound when
	// the notice has no entry and ErrNotResendable when it is sent or held
	// by a live claim.
	Reopen(ctx context.Context, key NoticeKey, recipient, reason string, at time.Time) (Entry, error)
}

// Suppression is one subscription's record that its contract manager's
// address bounced. It is stored under a keyed hash of the address (see
// package bounce), never under the address.
type Suppression struct {
	SubscriptionID string    `json:"subscription_id"`
	Notice         NoticeKey `json:"notice_key"`
	Status         string    `json:"status,omitempty"`
	At             time.Time `json:"at"`
}

// Suppressions is the list of addresses that bounced, by keyed hash. Both
// stores implement it on their Store; their Erase removes the erased
// subscription's records from it, so that no stored byte keeps even the
// hash once no other subscription shares the address.
type Suppressions interface {
	// Suppress records that the address with hash addr bounced for
	// s.SubscriptionID; a repeat replaces that subscription's record.
	Suppress(ctx context.Context, addr string, s Suppression) error
	// Suppressed returns a record of the address with hash addr, the
	// earliest, and whether there is any.
	Suppressed(ctx context.Context, addr string) (Suppression, bool, error)
	// SuppressedMany is Suppressed for each of addrs, in one round trip
	// where the store can: sups[i] and found[i] answer addrs[i]. An error
	// is the whole call's.
	SuppressedMany(ctx context.Context, addrs []string) (sups []Suppression, found []bool, err error)
	// Unsuppress removes every record of the address with hash addr.
	Unsuppress(ctx context.Context, addr string) error
}

// ValidAddressHash checks an address hash as the suppression list keeps it
// (lower-case hex), since the stores use it in keys and subjects.
func ValidAddressHash(addr string) error {
	if len(addr) < 16 || len(addr) > 128 || strings.Trim(addr, "0123456789abcdef") != "" {
		return fmt.Errorf("address hash %q: want lower-case hex", addr)
	}
	return nil
}
