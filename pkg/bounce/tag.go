// Package bounce closes the loop on email that comes back: the per-notice
// envelope sender (VERP) whose tag names the notice under an HMAC, keyed
// hashes of addresses for the suppression list, and the parser of delivery
// status notifications (RFC 3464) and of the common non-standard bounces.
// It holds no address: what it keeps or hands on is a keyed hash.
package bounce

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"renewals/pkg/subscription"
)

// Errors of Tagger.Parse, for errors.Is.
var (
	// ErrForeignDomain: the address is not at the bounce domain.
	ErrForeignDomain = errors.New("not an address of the bounce domain")
	// ErrNoTag: the local part is not bounce+<tag>, or the tag is malformed.
	ErrNoTag = errors.New("no bounce tag")
	// ErrBadMAC: the tag's HMAC does not match: forged or damaged.
	ErrBadMAC = errors.New("bounce tag does not verify")
)

const (
	localPrefix = "bounce+"
	rcptLen     = 10 // hex digits of the recipient hash a tag carries
	macLen      = 16 // hex digits of the tag's HMAC: 64 bits
)

// Tagger makes and checks the envelope senders of the notices, and hashes
// addresses, under one secret.
type Tagger struct {
	// Domain is the bounce domain (RENEWALS_BOUNCE_DOMAIN), lower case.
	Domain string
	secret []byte
}

// NewTagger returns a Tagger for domain under secret (at least 16 bytes).
// With no domain it only hashes addresses: no address parses as a tag.
func NewTagger(domain string, secret []byte) (*Tagger, error) {
	domain = strings.ToLower(strings.TrimSpace(domain))
	if domain != "" && (strings.ContainsAny(domain, "@ <>\r\n") || !strings.Contains(domain, ".") && domain != "localhost") {
		return nil, fmt.Errorf("RENEWALS_BOUNCE_DOMAIN %q is not a domain: use e.g. bounces.reseller.example", domain)
	}
	if len(secret) < 16 {
		return nil, fmt.Errorf("the bounce secret is %d bytes: use 16 or more (RENEWALS_BOUNCE_SECRET)", len(secret))
	}
	return &Tagger{Domain: domain, secret: secret}, nil
}

// LoadSecret returns the HMAC key of the bounce tags: secret when set
// (RENEWALS_BOUNCE_SECRET), else the key saved in dataDir/bounce-secret,
// generated (32 random bytes, hex, mode 0600) on first use. Every replica
// must share it: a tag made by one is checked by another.
func LoadSecret(secret, dataDir string) ([]byte, error) {
	if s := strings.TrimSpace(secret); s != "" {
		return []byte(s), nil
	}
	path := filepath.Join(dataDir, "bounce-secret")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("generate bounce secret: %w", err)
	}
	s := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("save bounce secret to %s: %w (or set RENEWALS_BOUNCE_SECRET)", path, err)
	}
	return []byte(s), nil
}

func (t *Tagger) mac(parts ...string) string {
	h := hmac.New(sha256.New, t.secret)
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// normal is an address as the hashes see it: trimmed, lower case.
func normal(addr string) string { return strings.ToLower(strings.TrimSpace(addr)) }

// AddressHash returns the keyed hash of an address under which the
// suppression list records it: the same address (in any case) always gives
// the same hash, and without the secret no one can tell which address it is.
func (t *Tagger) AddressHash(addr string) string { return t.mac("addr", normal(addr)) }

// RecipientHash returns the keyed hash of one notice and one address: the
// ledger's record of whom a notice was resent to.
func (t *Tagger) RecipientHash(key subscription.NoticeKey, addr string) string {
	return t.mac("rcpt", key.String(), normal(addr))
}

// Tag is what a bounce address says: the notice, and the start of the
// recipient hash of the address the notice went to.
type Tag struct {
	Key subscription.NoticeKey
	// Recipient is the first digits of RecipientHash(Key, address).
	Recipient string
}

// Matches reports whether the tag was made for a notice to addr.
func (g Tag) Matches(t *Tagger, addr string) bool {
	return strings.HasPrefix(t.RecipientHash(g.Key, addr), g.Recipient)
}

// ReturnPath returns the envelope sender of the notice key's email to addr:
// bounce+<id>=<yyyymmdd>=<milestone>=<recipient>=<mac>@<domain>. Every part
// is dot-atom text, so no relay needs to quote it.
func (t *Tagger) ReturnPath(key subscription.NoticeKey, addr string) string {
	rcpt := t.RecipientHash(key, addr)[:rcptLen]
	body := key.SubscriptionID + "=" + strings.ReplaceAll(key.EndDate.String(), "-", "") + "=" + strconv.Itoa(key.Milestone) + "=" + rcpt
	return localPrefix + body + "=" + t.mac("tag", body)[:macLen] + "@" + t.Domain
}

// Parse reads a bounce address (with or without angle brackets) and checks
// its HMAC. Errors wrap ErrForeignDomain, ErrNoTag or ErrBadMAC; their text
// never holds the address.
func (t *Tagger) Parse(addr string) (Tag, error) {
	addr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(addr), "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || t.Domain == "" || !strings.EqualFold(addr[at+1:], t.Domain) {
		return Tag{}, ErrForeignDomain
	}
	local := addr[:at]
	if len(local) < len(localPrefix) || !strings.EqualFold(local[:len(localPrefix)], localPrefix) {
		return Tag{}, ErrNoTag
	}
	parts := strings.Split(local[len(localPrefix):], "=")
	if len(parts) != 5 || len(parts[3]) != rcptLen || len(parts[4]) != macLen || len(parts[1]) != 8 {
		return Tag{}, ErrNoTag
	}
	body := strings.Join(parts[:4], "=")
	// Some relays lower-case local parts: the hex digits are compared so.
	if !hmac.Equal([]byte(strings.ToLower(parts[4])), []byte(t.mac("tag", body)[:macLen])) {
		return Tag{}, ErrBadMAC
	}
	d := parts[1]
	key, err := subscription.ParseNoticeKey(parts[0] + ":" + d[:4] + "-" + d[4:6] + "-" + d[6:] + ":" + parts[2])
	if err != nil {
		return Tag{}, fmt.Errorf("%w: %v", ErrNoTag, err)
	}
	return Tag{Key: key, Recipient: strings.ToLower(parts[3])}, nil
}
