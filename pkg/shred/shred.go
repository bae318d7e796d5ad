// Package shred crypto-shreds the personal data of subscriptions. Each
// subscription has its own random data key; its personal fields (contract
// manager, primary admin, secondary admin emails) are sealed with AES-256-GCM
// under that key, and only the sealed form is ever written to a store. A
// store keeps the data key apart from the record, and erasure destroys the
// key: every copy of the sealed record that an append-only log, an old
// revision or a backup still holds then becomes unreadable noise.
//
// The package also defines Record, the stored form of a subscription that
// both stores share, so that they seal, compare and open records the same way.
package shred

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"

	"renewals/pkg/subscription"
)

// KeySize is the length of a data key: a 32-byte AES-256 key followed by a
// 32-byte HMAC-SHA256 key for the record digest. Two independent halves keep
// one key from serving two algorithms.
const KeySize = 64

// ErrBadKey: the data key does not have KeySize bytes.
var ErrBadKey = errors.New("data key must be 64 bytes")

// ErrOpen: sealed data could not be opened: wrong key, another subscription's
// data, or tampering.
var ErrOpen = errors.New("sealed personal data does not open with this key")

// NewKey returns a fresh random data key of KeySize bytes.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("new data key: %w", err)
	}
	return k, nil
}

// Seal encrypts plaintext under the key's AES half with a random nonce and
// returns nonce||ciphertext||tag. aad binds the result to its context (the
// subscription id): Open fails when given another aad.
func Seal(key, plaintext, aad []byte) ([]byte, error) {
	g, err := gcm(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, g.NonceSize(), g.NonceSize()+len(plaintext)+g.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return g.Seal(out, out, plaintext, aad), nil
}

// Open decrypts what Seal returned. It returns an error wrapping ErrOpen
// when the key or aad is not the one sealed with, or the data was altered.
func Open(key, sealed, aad []byte) ([]byte, error) {
	g, err := gcm(key)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return nil, fmt.Errorf("open: %w: %d bytes is too short", ErrOpen, len(sealed))
	}
	n := g.NonceSize()
	pt, err := g.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("open: %w", ErrOpen)
	}
	return pt, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w, got %d", ErrBadKey, len(key))
	}
	b, err := aes.NewCipher(key[:32])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Record is the stored form of a subscription: the non-personal fields in
// clear (so that operators can read them and indexes can be rebuilt), the
// personal fields sealed, and a digest that tells whether two records hold
// the same data without opening them. A store writes it as Marshal gives it.
type Record struct {
	// Digest is hex HMAC-SHA256, under the data key's MAC half, of the clear
	// JSON, a zero byte and the personal JSON. Equal digests under one key
	// mean equal data; without the key it reveals nothing about the personal
	// part.
	Digest string `json:"d"`
	// End is the end date's ordinal (subscription.Date.Ordinal).
	End int64 `json:"e"`
	// Clear is the subscription without its personal fields.
	Clear json.RawMessage `json:"s"`
	// Sealed is the personal part (see personal), sealed with the
	// subscription id as additional data.
	Sealed []byte `json:"p"`
}

// personal is the sealed part of a subscription.
type personal struct {
	CM subscription.Contact `json:"cm,omitzero"`
	PA subscription.Contact `json:"pa,omitzero"`
	SA []string             `json:"sa,omitempty"`
}

// SealSubscription builds the Record of s under key. It returns an error
// wrapping ErrBadKey when key does not have KeySize bytes.
func SealSubscription(key []byte, s subscription.Subscription) (Record, error) {
	r, pj, err := fingerprint(key, s)
	if err != nil {
		return Record{}, err
	}
	if r.Sealed, err = Seal(key, pj, []byte(s.ID)); err != nil {
		return Record{}, fmt.Errorf("seal subscription %s: %w", s.ID, err)
	}
	return r, nil
}

// Fingerprint is SealSubscription without the sealed part: the digest, the
// end and the clear part, all that SameData compares. It encrypts nothing,
// so a store tells an unchanged row from a changed one before sealing.
func Fingerprint(key []byte, s subscription.Subscription) (Record, error) {
	r, _, err := fingerprint(key, s)
	return r, err
}

// fingerprint returns the Record of s without Sealed, and the personal JSON.
func fingerprint(key []byte, s subscription.Subscription) (Record, []byte, error) {
	if len(key) != KeySize {
		return Record{}, nil, fmt.Errorf("seal subscription %s: %w, got %d", s.ID, ErrBadKey, len(key))
	}
	clear, err := json.Marshal(s.WithoutPersonal())
	if err != nil {
		return Record{}, nil, fmt.Errorf("seal subscription %s: %w", s.ID, err)
	}
	pj, err := json.Marshal(personal{CM: s.ContractManager, PA: s.PrimaryAdmin, SA: s.SecondaryAdmins})
	if err != nil {
		return Record{}, nil, fmt.Errorf("seal subscription %s: personal part: %w", s.ID, err)
	}
	mac := hmac.New(sha256.New, key[32:])
	mac.Write(clear)
	mac.Write([]byte{0})
	mac.Write(pj)
	return Record{Digest: hex.EncodeToString(mac.Sum(nil)), End: s.EndDate.Ordinal(), Clear: clear}, pj, nil
}

// Records are read with encoding/json's successor (go-json-experiment/json),
// as the embedded store reads its stored form: it reads a value in one pass
// where encoding/json validates it first and then reads it again, with
// fewer allocations (BenchmarkOpenSubscription: 10 where encoding/json made
// 35), and every store read, a notice's and a pass's, opens one record.
// Its stricter reading (names matched with their case, a repeated name or
// invalid UTF-8 refused) cannot turn down a record of ours: every record was
// written by encoding/json's Marshal of these structs, or by the earlier
// hand-written encoders, which wrote its bytes exactly (invalid UTF-8 as
// U+FFFD); TestOpenRecordReadsAsEncodingJSON holds the two readers to the
// same results.

// OpenSubscription returns the subscription that r holds, opening its
// personal part with key. It returns an error wrapping ErrOpen when key is
// not the record's.
func OpenSubscription(key []byte, r Record) (subscription.Subscription, error) {
	var s subscription.Subscription
	if err := jsonv2.Unmarshal(r.Clear, &s); err != nil {
		return s, fmt.Errorf("open subscription record: %w", err)
	}
	return openPersonal(key, s, r.Sealed)
}

// OpenRecord is UnmarshalRecord and OpenSubscription at once, for a reader
// that wants only the subscription: the clear part is decoded where it
// stands in b, in the same pass as the rest of the record, rather than
// copied out and read again. The digest and end are not read.
func OpenRecord(key, b []byte) (subscription.Subscription, error) {
	if len(b) == 0 || b[0] != '{' {
		r, err := UnmarshalRecord(b) // the compact form, or no record at all
		if err != nil {
			return subscription.Subscription{}, err
		}
		return OpenSubscription(key, r)
	}
	var r struct {
		Clear  subscription.Subscription `json:"s"`
		Sealed []byte                    `json:"p"`
	}
	if err := jsonv2.Unmarshal(b, &r); err != nil {
		return subscription.Subscription{}, fmt.Errorf("decode subscription record: %w", err)
	}
	return openPersonal(key, r.Clear, r.Sealed)
}

// openPersonal opens the sealed personal part of s with key and sets it.
func openPersonal(key []byte, s subscription.Subscription, sealed []byte) (subscription.Subscription, error) {
	pj, err := Open(key, sealed, []byte(s.ID))
	if err != nil {
		return s, fmt.Errorf("open subscription %s: %w", s.ID, err)
	}
	var p personal
	if err := jsonv2.Unmarshal(pj, &p); err != nil {
		return s, fmt.Errorf("open subscription %s: personal part: %w", s.ID, err)
	}
	s.ContractManager, s.PrimaryAdmin, s.SecondaryAdmins = p.CM, p.PA, p.SA
	return s, nil
}

// Marshal returns r's stored form, its JSON.
func (r Record) Marshal() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode subscription record: %w", err)
	}
	return b, nil
}

// UnmarshalRecord reads what Marshal wrote, or a record in the older compact
// form (see compact.go). The result does not point into b.
func UnmarshalRecord(b []byte) (Record, error) {
	if len(b) > 0 && b[0] == compactVersion {
		return unmarshalCompact(b)
	}
	var r Record
	if err := jsonv2.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode subscription record: %w", err)
	}
	return r, nil
}

// SameData reports whether a and b hold the same subscription data. Both
// must have been sealed under the same key for the answer to mean anything.
func SameData(a, b Record) bool {
	return a.Digest == b.Digest && bytes.Equal(a.Clear, b.Clear)
}

// Usage returns the seat usage that r's subscription carries, or nil. It
// decodes only that field, and only when the record has one, so that an
// upsert pays for it only on subscriptions with usage.
func Usage(r Record) (*subscription.SeatUsage, error) {
	if !bytes.Contains(r.Clear, []byte(`"seat_usage"`)) {
		return nil, nil
	}
	var u struct {
		Usage *subscription.SeatUsage `json:"seat_usage"`
	}
	if err := json.Unmarshal(r.Clear, &u); err != nil {
		return nil, fmt.Errorf("decode seat usage: %w", err)
	}
	return u.Usage, nil
}
