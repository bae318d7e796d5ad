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
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"

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
// the same data without opening them. Its JSON form starts with the digest
// ({"d":"<64 hex>",...}) so that a Redis script can compare records by prefix.
type Record struct {
	// Digest is hex HMAC-SHA256, under the data key's MAC half, of the clear
	// JSON and the personal JSON. Equal digests under one key mean equal data;
	// without the key it reveals nothing about the personal part.
	Digest string `json:"d"`
	// End is the end date's ordinal (subscription.Date.Ordinal).
	End int64 `json:"e"`
	// Clear is the subscription without its personal fields.
	Clear json.RawMessage `json:"s"`
	// Sealed is the personal part (see Personal), sealed with the
	// subscription id as additional data.
	Sealed []byte `json:"p"`
}

// DigestPrefixLen is the length of the JSON prefix of a marshalled Record
// that holds the digest: `{"d":"` and 64 hex digits.
const DigestPrefixLen = 6 + 64

// personal is the sealed part of a subscription.
type personal struct {
	CM subscription.Contact `json:"cm,omitzero"`
	PA subscription.Contact `json:"pa,omitzero"`
	SA []string             `json:"sa,omitempty"`
}

// SealSubscription builds the Record of s under key.
func SealSubscription(key []byte, s subscription.Subscription) (Record, error) {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	clear, sealed, digest, err := sc.seal(key, &s)
	if err != nil {
		return Record{}, err
	}
	return Record{Digest: hex.EncodeToString(digest[:]), End: s.EndDate.Ordinal(), Clear: bytes.Clone(clear), Sealed: bytes.Clone(sealed)}, nil
}

// AppendRecord seals s under key like SealSubscription and appends the
// record's JSON form to dst, byte for byte what Record.Marshal would write
// for it: {"d":"<digest>","e":<end ordinal>,"s":<clear JSON>,"p":"<sealed,
// base64>"}. The digest is dst[len(dst)+6:][:64] of the result (see
// DigestPrefixLen).
func AppendRecord(dst, key []byte, s *subscription.Subscription) ([]byte, error) {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	clear, sealed, digest, err := sc.seal(key, s)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `{"d":"`...)
	dst = hex.AppendEncode(dst, digest[:])
	dst = append(dst, `","e":`...)
	dst = strconv.AppendInt(dst, s.EndDate.Ordinal(), 10)
	dst = append(dst, `,"s":`...)
	dst = append(dst, clear...)
	dst = append(dst, `,"p":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, sealed)
	return append(dst, `"}`...), nil
}

// The compact form of a record, which the Redis store writes: about 140
// bytes a record smaller than the JSON form (a raw digest, the sealed part
// unencoded, no field names around them), which is that much less for
// Redis to hold, to append to its log and to copy in every log rewrite. The
// clear part stays the JSON that operators read. Its layout:
//
//	CompactVersion | digest, 32 bytes | end ordinal, int64 big-endian |
//	length of the clear JSON, uint32 big-endian | clear JSON | sealed part
//
// UnmarshalRecord reads both forms: a JSON record never starts with
// CompactVersion.
const (
	// CompactVersion is the first byte of a record in the compact form.
	CompactVersion = 0x01
	// CompactHeaderLen is the length of the compact form's header, the
	// bytes before the clear JSON.
	CompactHeaderLen = 1 + sha256.Size + 8 + 4
)

// AppendCompactRecord seals s under key like SealSubscription and appends
// the record's compact form to dst. Of the result r, with n = len(dst), the
// raw digest is r[n+1:][:32] and the end ordinal is the big-endian int64 at
// r[n+33:][:8].
func AppendCompactRecord(dst, key []byte, s *subscription.Subscription) ([]byte, error) {
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	clear, sealed, digest, err := sc.seal(key, s)
	if err != nil {
		return dst, err
	}
	if len(clear) > math.MaxUint32 {
		return dst, fmt.Errorf("seal subscription %s: the clear part has %d bytes", s.ID, len(clear))
	}
	dst = append(dst, CompactVersion)
	dst = append(dst, digest[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(s.EndDate.Ordinal()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(clear)))
	dst = append(dst, clear...)
	return append(dst, sealed...), nil
}

// unmarshalCompact reads what AppendCompactRecord wrote.
func unmarshalCompact(b []byte) (Record, error) {
	if len(b) < CompactHeaderLen || b[0] != CompactVersion {
		return Record{}, fmt.Errorf("decode subscription record: %d bytes is too short for the compact form", len(b))
	}
	n := binary.BigEndian.Uint32(b[CompactHeaderLen-4:])
	if uint64(n) > uint64(len(b)-CompactHeaderLen) {
		return Record{}, fmt.Errorf("decode subscription record: the clear part's length %d runs past the record's end", n)
	}
	clear := b[CompactHeaderLen : CompactHeaderLen+int(n)]
	return Record{
		Digest: hex.EncodeToString(b[1 : 1+sha256.Size]),
		End:    int64(binary.BigEndian.Uint64(b[1+sha256.Size:])),
		Clear:  bytes.Clone(clear),
		Sealed: bytes.Clone(b[CompactHeaderLen+int(n):]),
	}, nil
}

// scratch is the working space of one seal, reused through scratchPool so
// that sealing a row allocates little beyond the cipher.
type scratch struct {
	buf []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{buf: make([]byte, 0, 2048)} }}

// seal encodes s's clear and personal parts, digests them and seals the
// personal part under key. clear and sealed point into sc and are valid until
// its next use.
//
// The digest is HMAC-SHA256 under key[32:] of clear || 0 || personal JSON,
// computed here from its definition (H(K^opad || H(K^ipad || m))) over one
// buffer, so that no HMAC state is allocated per row.
func (sc *scratch) seal(key []byte, s *subscription.Subscription) (clear, sealed []byte, digest [sha256.Size]byte, err error) {
	if len(key) != KeySize {
		return nil, nil, digest, fmt.Errorf("seal subscription %s: %w, got %d", s.ID, ErrBadKey, len(key))
	}
	const block = 64 // SHA-256's block size; the 32-byte MAC key is padded to it
	b := sc.buf[:0]
	for i := range block {
		k := byte(0)
		if i < KeySize-32 {
			k = key[32+i]
		}
		b = append(b, k^0x36)
	}
	b = appendClear(b, s)
	clearEnd := len(b)
	b = append(b, 0)
	pStart := len(b)
	b = appendPersonal(b, s)
	inner := sha256.Sum256(b)
	var outer [block + sha256.Size]byte
	for i := range block {
		k := byte(0)
		if i < KeySize-32 {
			k = key[32+i]
		}
		outer[i] = k ^ 0x5c
	}
	copy(outer[block:], inner[:])
	digest = sha256.Sum256(outer[:])

	g, err := gcm(key)
	if err != nil {
		return nil, nil, digest, fmt.Errorf("seal subscription %s: %w", s.ID, err)
	}
	pLen := len(b) - pStart
	b = slices.Grow(b, g.NonceSize()+pLen+g.Overhead())
	nonce := b[len(b) : len(b)+g.NonceSize()]
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, digest, fmt.Errorf("seal subscription %s: nonce: %w", s.ID, err)
	}
	sStart := len(b)
	b = b[:len(b)+len(nonce)]
	b = g.Seal(b, nonce, b[pStart:pStart+pLen], []byte(s.ID))
	sc.buf = b
	return b[block:clearEnd], b[sStart:], digest, nil
}

// OpenSubscription returns the subscription that r holds, opening its
// personal part with key. It returns an error wrapping ErrOpen when key is
// not the record's.
func OpenSubscription(key []byte, r Record) (subscription.Subscription, error) {
	var s subscription.Subscription
	if !decodeClear(r.Clear, &s) {
		s = subscription.Subscription{}
		if err := json.Unmarshal(r.Clear, &s); err != nil {
			return s, fmt.Errorf("open subscription record: %w", err)
		}
	}
	pj, err := Open(key, r.Sealed, []byte(s.ID))
	if err != nil {
		return s, fmt.Errorf("open subscription %s: %w", s.ID, err)
	}
	var p personal
	if !decodePersonal(pj, &p) {
		p = personal{}
		if err := json.Unmarshal(pj, &p); err != nil {
			return s, fmt.Errorf("open subscription %s: personal part: %w", s.ID, err)
		}
	}
	s.ContractManager, s.PrimaryAdmin, s.SecondaryAdmins = p.CM, p.PA, p.SA
	return s, nil
}

// Marshal returns r's JSON form, which starts with the digest.
func (r Record) Marshal() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode subscription record: %w", err)
	}
	return b, nil
}

// UnmarshalRecord reads what Record.Marshal or AppendCompactRecord wrote.
// The result does not point into b.
func UnmarshalRecord(b []byte) (Record, error) {
	if len(b) > 0 && b[0] == CompactVersion {
		return unmarshalCompact(b)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode subscription record: %w", err)
	}
	return r, nil
}

// SameData reports whether a and b hold the same subscription data. Both
// must have been sealed under the same key for the answer to mean anything.
func SameData(a, b Record) bool {
	return a.Digest == b.Digest && bytes.Equal(a.Clear, b.Clear)
}
