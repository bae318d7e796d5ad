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
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
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
	var c composer
	var buf bytes.Buffer
	if _, err := c.compose(&buf, snd, m, date); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sender is the From address, parsed once: the envelope and header form of
// the address and the domain that Message-IDs end in.
type sender struct {
	addr     string // local@domain
	bracket  string // <local@domain>, for the From header and MAIL FROM
	domain   string
	midRight string // "@" + the Message-ID's right-hand side
}

func newSender(from string) (sender, error) {
	a, err := singleAddress(from)
	if err != nil {
		return sender{}, err
	}
	domain := "renewals"
	if i := strings.LastIndexByte(a.Address, '@'); i >= 0 && validDomain(a.Address[i+1:]) {
		domain = a.Address[i+1:]
	}
	return sender{addr: a.Address, bracket: a.String(), domain: domain, midRight: "@" + domain}, nil
}

// composer writes messages. It keeps scratch space from message to message,
// so a worker that owns one composes without allocating much; it is not safe
// for concurrent use.
type composer struct {
	scratch []byte
}

// compose validates m and writes it to buf as RFC 5322 with CRLF line ends:
// the same bytes go-mail wrote for this message (header order and folding,
// RFC 2047 words, quoted-printable parts), without building its Msg. It
// returns the envelope recipient. Every check here fails permanently: the
// same input will never build.
func (c *composer) compose(buf *bytes.Buffer, snd sender, m Message, date time.Time) (rcpt string, err error) {
	if err := subscription.ValidID(m.Key.SubscriptionID); err != nil {
		return "", fmt.Errorf("build notice: %w: %w", err, ErrPermanent)
	}
	if m.Key.EndDate.IsZero() || m.Key.Milestone < 1 {
		return "", fmt.Errorf("build notice %s: the notice key needs an end date and a milestone: %w", m.Key, ErrPermanent)
	}
	to, err := singleAddress(m.To)
	if err != nil {
		return "", fmt.Errorf("build notice %s: contract manager address: %w", m.Key, err)
	}
	rcpt = to.String()
	// Every header value is one line: names and subjects lose their line
	// breaks here, RFC 2047 encoding (mail.Address.String, mime.QEncoding)
	// turns anything else outside printable ASCII into encoded words, and
	// the key and the addresses were validated above.
	to.Name = oneLine(m.ToName)
	subject := mime.QEncoding.Encode("UTF-8", oneLine(m.Subject))

	// A boundary derived from the content makes the same notice compose to
	// the same bytes; the content cannot hold a digest of itself.
	key := c.scratch[:0]
	key = appendKey(key, m.Key)
	key = append(key, 0)
	key = append(key, m.Subject...)
	key = append(key, 0)
	key = append(key, m.Text...)
	key = append(key, 0)
	key = append(key, m.HTML...)
	sum := sha256.Sum256(key)
	c.scratch = key[:0]
	var boundary [len("renewal-") + 32]byte
	copy(boundary[:], "renewal-")
	hex.Encode(boundary[len("renewal-"):], sum[:16])

	// Generic headers in go-mail's order (sorted by name), then From and To.
	writeHeader(buf, "Auto-Submitted", "auto-generated")
	c.scratch = date.AppendFormat(c.scratch[:0], time.RFC1123Z)
	writeHeader(buf, "Date", string(c.scratch))
	writeHeader(buf, "MIME-Version", "1.0")
	c.scratch = append(append(append(append(c.scratch[:0], '<'), "renewal."...), m.Key.SubscriptionID...), '.')
	c.scratch = appendDate(c.scratch, m.Key.EndDate)
	c.scratch = append(c.scratch, '.')
	c.scratch = strconv.AppendInt(c.scratch, int64(m.Key.Milestone), 10)
	c.scratch = append(append(c.scratch, snd.midRight...), '>')
	writeHeader(buf, "Message-ID", string(c.scratch))
	writeHeader(buf, "Subject", subject)
	c.scratch = appendKey(c.scratch[:0], m.Key)
	writeHeader(buf, HeaderNotice, string(c.scratch))
	writeHeader(buf, "From", snd.bracket)
	// To is the only recipient header ever written: no Cc, no Bcc.
	writeHeader(buf, "To", to.String())
	buf.WriteString("Content-Type: multipart/alternative;\r\n boundary=")
	buf.Write(boundary[:])
	buf.WriteString("\r\n\r\n")

	// The parts as mime/multipart writes them.
	buf.WriteString("--")
	buf.Write(boundary[:])
	buf.WriteString("\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n")
	c.writeQP(buf, m.Text)
	buf.WriteString("\r\n--")
	buf.Write(boundary[:])
	buf.WriteString("\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n")
	c.writeQP(buf, m.HTML)
	buf.WriteString("\r\n--")
	buf.Write(boundary[:])
	buf.WriteString("--\r\n")
	return rcpt, nil
}

// appendKey appends key as NoticeKey.String writes it.
func appendKey(b []byte, key subscription.NoticeKey) []byte {
	b = append(append(b, key.SubscriptionID...), ':')
	b = appendDate(b, key.EndDate)
	return strconv.AppendInt(append(b, ':'), int64(key.Milestone), 10)
}

// appendDate appends d as Date.String writes it: YYYY-MM-DD.
func appendDate(b []byte, d subscription.Date) []byte {
	if d.IsZero() {
		return b
	}
	if d.Year < 0 || d.Year > 9999 {
		return append(b, d.String()...)
	}
	pad := func(b []byte, n, width int) []byte {
		for w, v := width-1, n; w > 0; w-- {
			if v /= 10; v == 0 {
				b = append(b, '0')
			}
		}
		return strconv.AppendInt(b, int64(n), 10)
	}
	b = pad(b, d.Year, 4)
	b = pad(append(b, '-'), int(d.Month), 2)
	return pad(append(b, '-'), d.Day, 2)
}

// maxHeaderLength is where go-mail folds header lines (RFC 2047 asks encoded
// words to stay within 76 characters a line).
const maxHeaderLength = 76

// writeHeader writes "key: value" folded as go-mail folds it: at the spaces
// of value, before a word that would take the line past maxHeaderLength.
// value must hold no CR or LF.
func writeHeader(buf *bytes.Buffer, key, value string) {
	left := maxHeaderLength - 2 - len(key) - 2
	buf.WriteString(key)
	buf.WriteString(": ")
	for i := 0; ; i++ {
		word, rest, more := strings.Cut(value, " ")
		if left-len(word) <= 1 {
			// The space before the fold goes: the line break is the space.
			if b := buf.Bytes(); b[len(b)-1] == ' ' {
				buf.Truncate(len(b) - 1)
			}
			buf.WriteString("\r\n ")
			left = maxHeaderLength - 3
		}
		buf.WriteString(word)
		left -= len(word)
		if !more {
			break
		}
		buf.WriteByte(' ')
		left--
		value = rest
	}
	buf.WriteString("\r\n")
}

// writeQP writes s quoted-printable encoded, exactly as mime/quotedprintable
// does (line breaks become CRLF), copying the lines that need no encoding
// straight through: most of a rendered notice.
func (c *composer) writeQP(buf *bytes.Buffer, s string) {
	var qp *quotedprintable.Writer // made for the first line that needs it
	if loneCR(s) {
		// A CR without its LF makes the writer carry state (and buffered
		// bytes) past the next line break: let it have the whole text.
		qp = quotedprintable.NewWriter(buf)
		c.scratch = append(c.scratch[:0], s...)
		_, _ = qp.Write(c.scratch)
		_ = qp.Close()
		return
	}
	for len(s) > 0 {
		line, rest, nl := strings.Cut(s, "\n")
		body := line
		if nl {
			body = strings.TrimSuffix(line, "\r")
		}
		if plainQPLine(body) {
			// As the writer does: 75 bytes, then a soft line break.
			for len(body) > qpLineMax-1 {
				buf.WriteString(body[:qpLineMax-1])
				buf.WriteString("=\r\n")
				body = body[qpLineMax-1:]
			}
			buf.WriteString(body)
			if nl {
				buf.WriteString("\r\n")
			}
		} else {
			// With no lone CR, the quoted-printable writer ends a line
			// at its line break and flushes it, so it holds no state
			// between the lines given to it, and the plain lines can go
			// around it.
			if qp == nil {
				qp = quotedprintable.NewWriter(buf)
			}
			c.scratch = append(c.scratch[:0], line...)
			if nl {
				c.scratch = append(c.scratch, '\n')
			}
			_, _ = qp.Write(c.scratch)
			if !nl {
				_ = qp.Close()
			}
		}
		s = rest
	}
}

// loneCR reports whether s holds a CR that is not followed by an LF.
func loneCR(s string) bool {
	for {
		i := strings.IndexByte(s, '\r')
		if i < 0 {
			return false
		}
		if i+1 == len(s) || s[i+1] != '\n' {
			return true
		}
		s = s[i+2:]
	}
}

// qpLineMax is the longest line mime/quotedprintable writes, soft line
// break included.
const qpLineMax = 76

// plainQPLine reports whether quoted-printable leaves line as it is, but for
// soft line breaks: printable ASCII other than '=', and spaces and tabs but
// not at the end (the writer encodes those).
func plainQPLine(line string) bool {
	for i := 0; i < len(line); i++ {
		if b := line[i]; (b < '!' || b > '~' || b == '=') && b != ' ' && b != '\t' {
			return false
		}
	}
	return len(line) == 0 || line[len(line)-1] != ' ' && line[len(line)-1] != '\t'
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

// oneLine collapses every run of white space, line breaks included, into
// one space and trims the ends, so that a value can never end a header line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
