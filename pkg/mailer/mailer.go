// Package mailer turns a rendered notice into an RFC 5322 message and hands
// it over: to an SMTP server through a pool of long-lived connections, or,
// with no server configured, into an outbox directory of .eml files. Every
// message goes to exactly one address, the contract manager's, and carries
// the notice key in an X-Renewal-Notice header and in its Message-ID.
package mailer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"

	"renewals/pkg/subscription"
)

// HeaderNotice is the header that carries the notice key on every email.
const HeaderNotice = "X-Renewal-Notice"

// Errors that callers can test for with errors.Is.
var (
	// ErrPermanent: sending again will not help (a 5xx reply, an invalid
	// address, a message that cannot be built). Record the notice as failed
	// or undeliverable; do not retry.
	ErrPermanent = errors.New("permanent failure")
	// ErrInvalidAddress: the recipient or sender address is not a single
	// valid address. It wraps ErrPermanent.
	ErrInvalidAddress = fmt.Errorf("invalid address: %w", ErrPermanent)
	// ErrAmbiguous: the connection was lost after the whole message was
	// written but before the server's final reply (the RFC 1047 gap), so the
	// message may or may not have been delivered. It is transient: retry, and
	// flag the notice as possibly sent twice.
	ErrAmbiguous = errors.New("outcome unknown: connection lost after the message data")
	// ErrClosed: Send was called after Close.
	ErrClosed = errors.New("sender closed")
	// ErrNotStarted: Message.Begin refused, so nothing was sent.
	ErrNotStarted = errors.New("send not started")
)

// Message is one rendered notice for one recipient.
type Message struct {
	// Key names the notice; it becomes the X-Renewal-Notice header and the
	// Message-ID. Its subscription id must pass subscription.ValidID.
	Key subscription.NoticeKey
	// Also are the other notices the email carries: a contract's co-termed
	// subscriptions, whose notices go as one email. X-Renewal-Notice lists
	// Key, then these, separated by ", "; the Message-ID covers them all.
	Also []subscription.NoticeKey
	// To is the contract manager's address: the one and only recipient.
	To string
	// ToName is the contract manager's display name; it may be empty.
	ToName string
	// Subject, Text and HTML are the rendered email. CR and LF in Subject
	// are replaced by spaces; the bodies may hold any text.
	Subject, Text, HTML string
	// Begin, when set, is called before the message starts out: on the SMTP
	// connection that will carry it, when its worker takes it, which is at
	// most one message ahead of its transaction (MAIL FROM) — the round trip
	// runs beside the transaction of the message before — and again before
	// each new attempt on a new connection; before the outbox file is
	// written. When it fails the message is not sent and Send returns an
	// error wrapping ErrNotStarted and Begin's error. The notifier checks
	// and renews its claim here, so that a notice that waited long for a
	// connection or a rate token goes only if its claim still holds.
	Begin func() error
}

// begin runs m.Begin, if any.
func (m *Message) begin() error {
	if m.Begin == nil {
		return nil
	}
	if err := m.Begin(); err != nil {
		return fmt.Errorf("send notice %s: %w: %w", m.Key, ErrNotStarted, err)
	}
	return nil
}

// Pacer is implemented by senders that can tell how many messages they can
// start within a span of time (their connections, their rate limit and how
// long a message has been taking). The notifier takes on no more notices
// than that, so none waits for a connection longer than its claim lasts.
type Pacer interface {
	// Capacity returns how many messages can start within d, at least one;
	// 0 means no bound is known.
	Capacity(d time.Duration) int
}

// Sender hands messages over for delivery. Implementations are safe for
// concurrent use.
type Sender interface {
	// Send delivers m or returns why not. A nil error means the message was
	// accepted (by the SMTP server, or written to the outbox). An error
	// wrapping ErrPermanent must not be retried; one wrapping ErrAmbiguous
	// may have been delivered; any other error is transient. Send honours
	// ctx while waiting for a connection and aborts the connection when ctx
	// ends mid-send.
	Send(ctx context.Context, m Message) error
	// Close releases connections; Send then returns ErrClosed.
	Close() error
}

// Open returns the Sender that the configuration asks for: SMTP when smtpURL
// is set (see ParseURL), else an Outbox writing into outboxDir. from is the
// From address (RENEWALS_MAIL_FROM); now stamps the Date header and may be
// nil for the wall clock.
func Open(smtpURL, from, outboxDir string, now func() time.Time) (Sender, error) {
	if smtpURL == "" {
		return NewOutbox(outboxDir, from, now)
	}
	cfg, err := ParseURL(smtpURL)
	if err != nil {
		return nil, err
	}
	return NewSMTP(cfg, from, now)
}

// Keys returns the notice keys the message carries: Key, then Also.
func (m *Message) Keys() []subscription.NoticeKey {
	return append([]subscription.NoticeKey{m.Key}, m.Also...)
}

// header is the X-Renewal-Notice value: the keys, separated by ", ".
func (m *Message) header() string {
	h := m.Key.String()
	for _, k := range m.Also {
		h += ", " + k.String()
	}
	return h
}

// messageID is MessageID of the message's key; an email of several notices
// adds a digest of the other keys, so that each set of keys has its own id.
func (m *Message) messageID(from string) string {
	id := MessageID(m.Key, from)
	if len(m.Also) == 0 {
		return id
	}
	sum := sha256.Sum256([]byte(m.header()))
	at := strings.LastIndexByte(id, '@')
	return id[:at] + "." + hex.EncodeToString(sum[:6]) + id[at:]
}

// MessageID returns the Message-ID (without angle brackets) of the notice
// key's email: the same key always gives the same id, so a receiving system
// can see a resent notice as the same message. The right-hand side is the
// domain of from, or "renewals" when from has none.
func MessageID(key subscription.NoticeKey, from string) string {
	return "renewal." + key.SubscriptionID + "." + key.EndDate.String() + "." + strconv.Itoa(key.Milestone) + "@" + idDomain(from)
}

// lastIDDomain is the From address idDomain saw last and its domain: a
// process sends from one address, which need not be parsed for every
// message.
var lastIDDomain atomic.Pointer[[2]string]

// idDomain returns the Message-ID domain of from: its domain, or
// "renewals".
func idDomain(from string) string {
	if last := lastIDDomain.Load(); last != nil && last[0] == from {
		return last[1]
	}
	domain := "renewals"
	if a, err := mail.ParseAddress(from); err == nil {
		if d := a.Address[strings.LastIndexByte(a.Address, '@')+1:]; domainRE.MatchString(d) {
			domain = d
		}
	}
	lastIDDomain.Store(&[2]string{from, domain})
	return domain
}

// domainRE matches the domains a Message-ID may end in: dot-atom text of
// letters, digits, '.' and '-'.
var domainRE = regexp.MustCompile(`^[A-Za-z0-9.-]{1,253}$`)

// Compose returns the message as the bytes an SMTP server would receive
// (before dot-stuffing) and the outbox stores: go-mail's RFC 5322 with CRLF
// line ends, multipart/alternative with a text/plain and a text/html part.
func Compose(from string, m Message, date time.Time) ([]byte, error) {
	return compose(from, m, date, Envelope{})
}

// compose is Compose with env applied: signed when env says so, and with a
// Return-Path header (as the final mail system adds it) naming the envelope
// sender, when env sets one.
func compose(from string, m Message, date time.Time, env Envelope) ([]byte, error) {
	f, err := parseAddress(from, true)
	if err != nil {
		return nil, fmt.Errorf("build notice %s: From address (RENEWALS_MAIL_FROM): %w", m.Key, err)
	}
	msg, err := newMsg(f, m, date, env)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	// Room for headers of a few hundred bytes and the bodies, which go out
	// quoted-printable (some bytes escaped, lines longer than 76 broken), a
	// little longer than they are, spares the buffer its growing.
	body := len(m.Text) + len(m.HTML)
	buf.Grow(2048 + len(m.Subject) + body + body/8)
	if rp := msg.GetAddrHeader(gomail.HeaderEnvelopeFrom); len(rp) > 0 {
		buf.WriteString("Return-Path: <" + rp[0].Address + ">\r\n")
	}
	if _, err := msg.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("build notice %s: %w: %w", m.Key, err, ErrPermanent)
	}
	return buf.Bytes(), nil
}

// newMsg validates m and builds its go-mail Msg with env applied. Every
// error here is permanent: the same input will never build.
func newMsg(from *mail.Address, m Message, date time.Time, env Envelope) (*gomail.Msg, error) {
	for _, k := range m.Keys() {
		if err := subscription.ValidID(k.SubscriptionID); err != nil {
			return nil, fmt.Errorf("build notice: %w: %w", err, ErrPermanent)
		}
		if k.EndDate.IsZero() || k.Milestone == 0 {
			return nil, fmt.Errorf("build notice %s: the notice key needs an end date and a milestone: %w", k, ErrPermanent)
		}
	}
	to, err := parseAddress(m.To, false)
	if err != nil {
		return nil, fmt.Errorf("build notice %s: contract manager address: %w", m.Key, err)
	}
	// Every header value is one line: names and subjects lose their line
	// breaks here, go-mail's RFC 2047 encoding turns anything else outside
	// printable ASCII into encoded words, and the key and the addresses were
	// validated above.
	to.Name = subscription.OneLine(m.ToName)
	// A boundary derived from the content makes the same notice compose to
	// the same bytes; the content cannot hold a digest of itself. The
	// content is copied once, into the buffer it is digested from, and the
	// bodies are written from that buffer.
	header := m.header()
	content := make([]byte, 0, len(header)+len(m.Subject)+len(m.Text)+len(m.HTML)+3)
	content = append(append(content, header...), 0)
	content = append(append(content, m.Subject...), 0)
	text := len(content)
	content = append(append(content, m.Text...), 0)
	html := len(content)
	content = append(content, m.HTML...)
	sum := sha256.Sum256(content)
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithBoundary("renewal-"+hex.EncodeToString(sum[:16])))
	msg.SetAddrHeaderFromMailAddress(gomail.HeaderFrom, from)
	// To is the only recipient: no Cc, no Bcc.
	msg.SetAddrHeaderFromMailAddress(gomail.HeaderTo, to)
	msg.Subject(subscription.OneLine(m.Subject))
	msg.SetMessageIDWithValue(m.messageID(from.Address))
	msg.SetDateWithValue(date)
	msg.SetGenHeader(HeaderNotice, header)
	// RFC 3834: an automatic message, which auto-responders do not answer.
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetBodyWriter(gomail.TypeTextPlain, writeBytes(content[text:text+len(m.Text)]))
	msg.AddAlternativeWriter(gomail.TypeTextHTML, writeBytes(content[html:]))
	return msg, env.apply(msg, m)
}

// writeBytes is a go-mail body writer of b, which it writes each time the
// message is written (signed, then sent) and never changes.
func writeBytes(b []byte) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		n, err := w.Write(b)
		return int64(n), err
	}
}

// parseAddress parses s as exactly one address, with a display name only
// when named (the From address may have one: "Acme Software Ltd"
// <renewals@acme.example>), and fails with ErrInvalidAddress otherwise.
func parseAddress(s string, named bool) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	trimmed := strings.TrimSpace(s)
	switch {
	case s == "":
		return nil, fmt.Errorf("no address given: %w", ErrInvalidAddress)
	case strings.ContainsAny(s, "\r\n"):
		return nil, fmt.Errorf("address contains a line break: %w", ErrInvalidAddress)
	case err != nil || !named && (a.Name != "" || trimmed != a.Address && trimmed != "<"+a.Address+">"):
		return nil, fmt.Errorf("not a single email address such as name@example.com: %w", ErrInvalidAddress)
	}
	return &mail.Address{Name: subscription.OneLine(a.Name), Address: a.Address}, nil
}
