// Package mailer turns a rendered notice into an RFC 5322 message and hands
// it over: to an SMTP server through a pool of long-lived connections, or,
// with no server configured, into an outbox directory of .eml files. Every
// message goes to exactly one address, the contract manager's, and carries
// the notice key in an X-Renewal-Notice header and in its Message-ID.
package mailer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"mime"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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
	// To is the contract manager's address: the one and only recipient.
	To string
	// ToName is the contract manager's display name; it may be empty.
	ToName string
	// Subject, Text and HTML are the rendered email. CR and LF in Subject
	// are replaced by spaces; the bodies may hold any text.
	Subject, Text, HTML string
	// Begin, when set, is called just before the message starts out: before
	// its SMTP transaction (MAIL FROM), again before each new attempt on a
	// new connection, and before the outbox file is written. When it fails
	// the message is not sent and Send returns an error wrapping
	// ErrNotStarted and Begin's error. The notifier checks and renews its
	// claim here, so that a notice that waited long for a connection or a
	// rate token goes only if its claim still holds.
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

// MessageID returns the Message-ID (without angle brackets) of the notice
// key's email: the same key always gives the same id, so a receiving system
// can see a resent notice as the same message. The right-hand side is the
// domain of from, or "renewals" when from has none.
func MessageID(key subscription.NoticeKey, from string) string {
	domain := "renewals"
	if a, err := mail.ParseAddress(from); err == nil {
		if i := strings.LastIndexByte(a.Address, '@'); i >= 0 && validDomain(a.Address[i+1:]) {
			domain = a.Address[i+1:]
		}
	}
	return fmt.Sprintf("renewal.%s.%s.%d@%s", key.SubscriptionID, key.EndDate, key.Milestone, domain)
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return false
		}
	}
	return true
}

// Compose returns the message as the bytes an SMTP server would receive
// (before dot-stuffing) and the outbox stores: RFC 5322 with CRLF line ends,
// multipart/alternative with a text/plain and a text/html part.
func Compose(from string, m Message, date time.Time) ([]byte, error) {
	snd, err := newSender(from)
	if err != nil {
		return nil, fmt.Errorf("build notice %s: From address (RENEWALS_MAIL_FROM): %w", m.Key, err)
	}
	c := composers.Get().(*composer)
	defer composers.Put(c)
	out, _, err := c.compose(nil, snd, m, date)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// composers keeps the digests and scratch space of Compose's composers.
var composers = sync.Pool{New: func() any { return new(composer) }}

// sender is the From address, parsed once: the envelope and header form of
// the address and the domain that Message-IDs end in.
type sender struct {
	addr     string // local@domain
	bracket  string // <local@domain>, for MAIL FROM
	header   string // the From header's value: the bracket, after a display name if one was given
	domain   string
	midRight string // "@" + the Message-ID's right-hand side
}

func newSender(from string) (sender, error) {
	// A display name ("Acme Software Ltd" <renewals@acme.example>) is kept
	// for the From header; the address alone goes into the envelope.
	name := ""
	if p, err := mail.ParseAddress(from); err == nil && p.Name != "" && !strings.ContainsAny(from, "\r\n") {
		name, from = p.Name, p.Address
	}
	a, err := singleAddress(from)
	if err != nil {
		return sender{}, err
	}
	header := a.String()
	if name != "" {
		header = (&mail.Address{Name: subscription.OneLine(name), Address: a.Address}).String()
	}
	domain := "renewals"
	if i := strings.LastIndexByte(a.Address, '@'); i >= 0 && validDomain(a.Address[i+1:]) {
		domain = a.Address[i+1:]
	}
	return sender{addr: a.Address, bracket: a.String(), header: header, domain: domain, midRight: "@" + domain}, nil
}

// composer writes messages. It keeps its digest and scratch space from
// message to message, so a worker that owns one composes without allocating
// much; it is not safe for concurrent use.
type composer struct {
	scratch []byte
	digest  hash.Hash
	chunk   [512]byte // strings go through here into the digest
}

// compose validates m and appends it to dst as RFC 5322 with CRLF line
// ends: the same bytes go-mail wrote for this message (header order and
// folding, RFC 2047 words, quoted-printable parts), without building its
// Msg. It returns the extended slice and the envelope recipient. Every check
// here fails permanently: the same input will never build.
func (c *composer) compose(dst []byte, snd sender, m Message, date time.Time) (out []byte, rcpt string, err error) {
	if err := subscription.ValidID(m.Key.SubscriptionID); err != nil {
		return dst, "", fmt.Errorf("build notice: %w: %w", err, ErrPermanent)
	}
	if m.Key.EndDate.IsZero() || m.Key.Milestone < 1 {
		return dst, "", fmt.Errorf("build notice %s: the notice key needs an end date and a milestone: %w", m.Key, ErrPermanent)
	}
	to, err := singleAddress(m.To)
	if err != nil {
		return dst, "", fmt.Errorf("build notice %s: contract manager address: %w", m.Key, err)
	}
	rcpt = to.String()
	// Every header value is one line: names and subjects lose their line
	// breaks here, RFC 2047 encoding (mail.Address.String, mime.QEncoding)
	// turns anything else outside printable ASCII into encoded words, and
	// the key and the addresses were validated above.
	to.Name = subscription.OneLine(m.ToName)
	subject := mime.QEncoding.Encode("UTF-8", subscription.OneLine(m.Subject))

	// A boundary derived from the content makes the same notice compose to
	// the same bytes; the content cannot hold a digest of itself.
	if c.digest == nil {
		c.digest = sha256.New()
	}
	c.digest.Reset()
	c.scratch = append(append(c.scratch[:0], m.Key.String()...), 0)
	c.digest.Write(c.scratch)
	c.hashString(m.Subject)
	c.digest.Write(c.scratch[len(c.scratch)-1:])
	c.hashString(m.Text)
	c.digest.Write(c.scratch[len(c.scratch)-1:])
	c.hashString(m.HTML)
	var sum [sha256.Size]byte
	c.digest.Sum(sum[:0])
	var boundary [len("renewal-") + 32]byte
	copy(boundary[:], "renewal-")
	hex.Encode(boundary[len("renewal-"):], sum[:16])

	// One allocation for the common message: headers, parts and the
	// quoted-printable overhead of mostly ASCII text.
	need := 1024 + len(m.Subject)*3 + len(m.ToName)*3
	need += len(m.Text) + len(m.Text)/8 + len(m.HTML) + len(m.HTML)/8
	dst = slices.Grow(dst, need)

	// Generic headers in go-mail's order (sorted by name), then From and To.
	dst = appendHeader(dst, "Auto-Submitted", "auto-generated")
	c.scratch = date.AppendFormat(c.scratch[:0], time.RFC1123Z)
	dst = appendHeader(dst, "Date", c.scratch)
	dst = appendHeader(dst, "MIME-Version", "1.0")
	c.scratch = append(append(append(append(c.scratch[:0], '<'), "renewal."...), m.Key.SubscriptionID...), '.')
	c.scratch = append(c.scratch, m.Key.EndDate.String()...)
	c.scratch = append(c.scratch, '.')
	c.scratch = strconv.AppendInt(c.scratch, int64(m.Key.Milestone), 10)
	c.scratch = append(append(c.scratch, snd.midRight...), '>')
	dst = appendHeader(dst, "Message-ID", c.scratch)
	dst = appendHeader(dst, "Subject", subject)
	c.scratch = append(c.scratch[:0], m.Key.String()...)
	dst = appendHeader(dst, HeaderNotice, c.scratch)
	dst = appendHeader(dst, "From", snd.header)
	// To is the only recipient header ever written: no Cc, no Bcc.
	dst = appendHeader(dst, "To", to.String())
	dst = append(dst, "Content-Type: multipart/alternative;\r\n boundary="...)
	dst = append(dst, boundary[:]...)
	dst = append(dst, "\r\n\r\n"...)

	// The parts as mime/multipart writes them.
	dst = append(dst, "--"...)
	dst = append(dst, boundary[:]...)
	dst = append(dst, "\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"...)
	dst = appendQP(dst, m.Text)
	dst = append(dst, "\r\n--"...)
	dst = append(dst, boundary[:]...)
	dst = append(dst, "\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n"...)
	dst = appendQP(dst, m.HTML)
	dst = append(dst, "\r\n--"...)
	dst = append(dst, boundary[:]...)
	dst = append(dst, "--\r\n"...)
	return dst, rcpt, nil
}

// hashString feeds s to the digest through a fixed buffer: the digest takes
// only byte slices, and converting a body would copy it whole.
func (c *composer) hashString(s string) {
	for len(s) > 0 {
		n := copy(c.chunk[:], s)
		c.digest.Write(c.chunk[:n])
		s = s[n:]
	}
}

// maxHeaderLength is where go-mail folds header lines (RFC 2047 asks encoded
// words to stay within 76 characters a line).
const maxHeaderLength = 76

// appendHeader appends "key: value" folded as go-mail folds it: at the
// spaces of value, before a word that would take the line past
// maxHeaderLength. value must hold no CR or LF.
func appendHeader[S string | []byte](dst []byte, key string, value S) []byte {
	left := maxHeaderLength - 2 - len(key) - 2
	dst = append(dst, key...)
	dst = append(dst, ": "...)
	for {
		i := 0
		for i < len(value) && value[i] != ' ' {
			i++
		}
		word := value[:i]
		if left-len(word) <= 1 {
			// The space before the fold goes: the line break is the space.
			if dst[len(dst)-1] == ' ' {
				dst = dst[:len(dst)-1]
			}
			dst = append(dst, "\r\n "...)
			left = maxHeaderLength - 3
		}
		dst = append(dst, word...)
		left -= len(word)
		if i == len(value) {
			break
		}
		dst = append(dst, ' ')
		left--
		value = value[i+1:]
	}
	return append(dst, "\r\n"...)
}

// qpLineMax is the longest line mime/quotedprintable writes, soft line
// break included.
const qpLineMax = 76

// qpLiteral marks the bytes that mime/quotedprintable copies as they are
// (but for trailing white space): printable ASCII other than '=', space and
// tab.
var qpLiteral = func() (t [256]bool) {
	for b := '!'; b <= '~'; b++ {
		t[b] = b != '='
	}
	t[' '], t['\t'] = true, true
	return t
}()

const upperhex = "0123456789ABCDEF"

// allQPLiteral8 reports whether the 8 bytes of s are all in ' '..'~' and
// none is '=': literal bytes for quoted-printable (a tab, also literal, is
// left to the byte-wise check). It tests them at once, in a word.
func allQPLiteral8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	below := (x - ones*0x20) &^ x // high bit set where a byte < 0x20 (borrows only follow one)
	above := x | (x + ones)       // high bit set where a byte >= 0x7f
	eq := x ^ (ones * '=')        // a zero byte where a byte is '='
	eq = (eq - ones) &^ eq        // its high bit set
	return (below|above|eq)&highs == 0
}

// appendQP appends s quoted-printable encoded byte for byte as a
// mime/quotedprintable Writer (not in binary mode) writes it, Close
// included: line breaks (LF, CRLF, a lone CR) become CRLF, lines are cut
// with a soft line break before they pass 76 bytes, and a space or tab
// before a hard line break or at the end is encoded. Runs of literal bytes
// are copied whole. It reproduces the Writer's state machine, quirks
// included: an encoded byte between a CR and an LF leaves the LF swallowed,
// as the Writer only clears its CR flag for a literal byte.
func appendQP(dst []byte, s string) []byte {
	lineStart := len(dst) // where the current output line begins
	cr := false           // the last line break was a CR: an LF right after it is part of it
	encode := func(dst []byte, b byte) []byte {
		if len(dst)-lineStart > qpLineMax-4 {
			dst = append(dst, "=\r\n"...)
			lineStart = len(dst)
		}
		return append(dst, '=', upperhex[b>>4], upperhex[b&0x0f])
	}
	// lastSpace encodes a space or tab that ends the line so far.
	lastSpace := func(dst []byte) []byte {
		if n := len(dst); n > lineStart && (dst[n-1] == ' ' || dst[n-1] == '\t') {
			return encode(dst[:n-1], dst[n-1])
		}
		return dst
	}
	for p := 0; p < len(s); {
		b := s[p]
		if qpLiteral[b] {
			q := p + 1
			for q+8 <= len(s) && allQPLiteral8(s[q:q+8]) {
				q += 8
			}
			for q < len(s) && qpLiteral[s[q]] {
				q++
			}
			for p < q {
				if len(dst)-lineStart == qpLineMax-1 {
					dst = append(dst, "=\r\n"...)
					lineStart = len(dst)
				}
				n := min(q-p, qpLineMax-1-(len(dst)-lineStart))
				dst = append(dst, s[p:p+n]...)
				p += n
			}
			cr = false
			continue
		}
		p++
		switch b {
		case '\n':
			if cr {
				cr = false
				continue
			}
		case '\r':
			cr = true
		default:
			dst = encode(dst, b)
			continue
		}
		dst = append(lastSpace(dst), '\r', '\n')
		lineStart = len(dst)
	}
	return lastSpace(dst)
}

// singleAddress parses s as exactly one bare address (no display name, no
// list) and fails with ErrInvalidAddress otherwise.
func singleAddress(s string) (*mail.Address, error) {
	if s == "" {
		return nil, fmt.Errorf("no address given: %w", ErrInvalidAddress)
	}
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("address contains a line break: %w", ErrInvalidAddress)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != strings.TrimSpace(s) && "<"+a.Address+">" != strings.TrimSpace(s) {
		return nil, fmt.Errorf("not a single email address such as name@example.com: %w", ErrInvalidAddress)
	}
	return &mail.Address{Address: a.Address}, nil
}
