package mailer

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	gomail "github.com/wneessen/go-mail"
)

// Envelope is what a Sender adds to each message beyond its content: the
// envelope sender (MAIL FROM, the Return-Path the bounces go to) and a DKIM
// signature. The zero Envelope adds nothing: MAIL FROM is the From address.
type Envelope struct {
	// ReturnPath, when set, returns the envelope sender of m, e.g. the
	// per-notice bounce address of package bounce. The From header is
	// unchanged: it stays the reseller's.
	ReturnPath func(m Message) string
	// DKIM, when set, signs every message.
	DKIM *DKIM
}

// Enveloper is implemented by the Senders of this package; SetEnvelope must
// be called before the first Send.
type Enveloper interface {
	SetEnvelope(Envelope)
}

// DKIM signs messages for one domain and selector (RFC 6376), with relaxed
// canonicalization of the header and the body, which survives the folding
// and white space changes of relays.
type DKIM struct {
	Domain   string
	Selector string
	Signer   crypto.Signer
}

// signedHeaders are the header fields the signature covers: RFC 6376 section
// 5.4.1's recommendations that the notices carry, and the notice key.
var signedHeaders = []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "X-Renewal-Notice", "Auto-Submitted"}

// LoadDKIM reads the private key (PEM: PKCS#1 or PKCS#8 RSA, or PKCS#8
// Ed25519) from keyFile (RENEWALS_DKIM_KEY_FILE) for selector
// (RENEWALS_DKIM_SELECTOR); the signing domain is the From address's.
func LoadDKIM(keyFile, selector, from string) (*DKIM, error) {
	if keyFile == "" || selector == "" {
		return nil, fmt.Errorf("DKIM signing needs both RENEWALS_DKIM_KEY_FILE and RENEWALS_DKIM_SELECTOR")
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, fmt.Errorf("DKIM signing: From address %q (RENEWALS_MAIL_FROM): %w", from, err)
	}
	domain := a.Address[strings.LastIndexByte(a.Address, '@')+1:]
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("RENEWALS_DKIM_KEY_FILE: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("RENEWALS_DKIM_KEY_FILE %s holds no PEM block: give a private key such as `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` writes", keyFile)
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
			return nil, fmt.Errorf("RENEWALS_DKIM_KEY_FILE %s is not an RSA or Ed25519 private key in PKCS#1 or PKCS#8 PEM", keyFile)
		}
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("RENEWALS_DKIM_KEY_FILE %s: this kind of key cannot sign", keyFile)
	}
	d := &DKIM{Domain: domain, Selector: selector, Signer: signer}
	if _, err := dkim.NewSigner(d.options()); err != nil {
		return nil, fmt.Errorf("RENEWALS_DKIM_KEY_FILE %s: %w", keyFile, err)
	}
	return d, nil
}

func (d *DKIM) options() *dkim.SignOptions {
	return &dkim.SignOptions{
		Domain: d.Domain, Selector: d.Selector, Signer: d.Signer, Hash: crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: signedHeaders,
	}
}

// apply sets msg's envelope sender and signs it. go-mail writes a message
// the same way every time (sorted headers, a boundary and a date fixed by
// newMsg), so the signature of one rendering holds for the bytes it sends.
func (e Envelope) apply(msg *gomail.Msg, m Message) error {
	if e.ReturnPath != nil {
		if rp := e.ReturnPath(m); rp != "" {
			if err := msg.EnvelopeFrom(rp); err != nil {
				return fmt.Errorf("build notice %s: envelope sender: %w: %w", m.Key, err, ErrPermanent)
			}
		}
	}
	if e.DKIM == nil {
		return nil
	}
	s, err := dkim.NewSigner(e.DKIM.options())
	if err == nil {
		_, err = msg.WriteTo(s)
		err = errors.Join(err, s.Close())
	}
	if err != nil {
		return fmt.Errorf("sign notice %s: %w: %w", m.Key, err, ErrPermanent)
	}
	name, value, _ := strings.Cut(s.Signature(), ":")
	msg.SetGenHeaderPreformatted(gomail.Header(name), strings.TrimSuffix(strings.TrimLeft(value, " "), "\r\n"))
	return nil
}
