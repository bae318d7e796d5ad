package mailer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
	"golang.org/x/time/rate"

	"renewals/pkg/subscription"
)

const (
	// commandTimeout bounds one send (every command of a transaction) and
	// one dial, handshake and authentication.
	commandTimeout = 30 * time.Second
	// idleTimeout closes a connection nobody used for this long, before the
	// server's own time-out does (RFC 5321 asks servers for at least 5 minutes).
	idleTimeout = 60 * time.Second
)

// SMTPSender delivers messages through a pool of workers, each holding one
// SMTP connection that it reuses from message to message and opens again
// after an error. Workers share no go-mail state: one go-mail Client used
// from several goroutines is not safe.
type SMTPSender struct {
	cfg   SMTPConfig
	from  sender
	now   func() time.Time
	limit *rate.Limiter
	jobs  chan job
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

type job struct {
	ctx  context.Context
	msg  Message
	done chan error
}

// NewSMTP starts cfg.Workers workers (DefaultWorkers when 0). Connections
// are opened lazily, on each worker's first message, so a server that is
// down at start-up fails sends (transiently), not start-up. from is the From
// address; now stamps the Date header and may be nil for the wall clock.
func NewSMTP(cfg SMTPConfig, from string, now func() time.Time) (*SMTPSender, error) {
	if cfg.Host == "" || cfg.Port == 0 {
		return nil, fmt.Errorf("start smtp sender: no host and port: set RENEWALS_SMTP_URL, e.g. %s", urlExample)
	}
	snd, err := newSender(from)
	if err != nil {
		return nil, fmt.Errorf("start smtp sender: From address %q (RENEWALS_MAIL_FROM): %w", from, err)
	}
	cfg.Workers = max(cfg.Workers, 0)
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSOpportunistic
	}
	if now == nil {
		now = time.Now
	}
	s := &SMTPSender{cfg: cfg, from: snd, now: now, jobs: make(chan job), quit: make(chan struct{})}
	if cfg.Rate > 0 {
		s.limit = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	workers := make([]*worker, cfg.Workers)
	for i := range workers {
		w, err := newWorker(s)
		if err != nil {
			return nil, err
		}
		workers[i] = w
	}
	s.wg.Add(len(workers))
	for _, w := range workers {
		go w.run()
	}
	return s, nil
}

// Config returns the configuration the sender runs with, defaults applied.
func (s *SMTPSender) Config() SMTPConfig { return s.cfg }

// Send waits for the rate limit and a free worker, then delivers m on that
// worker's connection. See Sender for the meaning of its errors; a failure
// is a *DeliveryError unless ctx ended or the sender was closed first.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	select {
	case <-s.quit:
		return fmt.Errorf("send notice %s: %w", m.Key, ErrClosed)
	default:
	}
	if s.limit != nil {
		if err := s.limit.Wait(ctx); err != nil {
			return fmt.Errorf("send notice %s: wait for the rate limit: %w", m.Key, err)
		}
	}
	j := job{ctx: ctx, msg: m, done: make(chan error, 1)}
	select {
	case s.jobs <- j:
	case <-s.quit:
		return fmt.Errorf("send notice %s: %w", m.Key, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("send notice %s: wait for a free connection: %w", m.Key, ctx.Err())
	}
	return <-j.done
}

// Close stops the workers after their current message and closes their
// connections with QUIT. It is safe to call more than once.
func (s *SMTPSender) Close() error {
	s.once.Do(func() { close(s.quit) })
	s.wg.Wait()
	return nil
}

// DeliveryError is why the SMTP server did not take a message. Its Error
// text is safe to log: it names the notice key and the server's reply, with
// the recipient's address removed from the reply.
type DeliveryError struct {
	Key subscription.NoticeKey
	// Stage is the step that failed: "connect", "connection check",
	// "MAIL FROM", "RCPT TO", "DATA", "message data" or "end of DATA".
	Stage string
	// Code is the server's reply code, e.g. 550; 0 when no reply came
	// (refused connection, reset, time-out).
	Code int
	// Reply is the server's reply line, e.g. "550 5.1.1 mailbox unavailable",
	// for the call list; empty when Code is 0.
	Reply string
	// Permanent is set for a 5xx reply to the message's own commands; it
	// makes the error match ErrPermanent.
	Permanent bool
	// Ambiguous is set when the connection was lost after the message data
	// was written and before the reply; it makes the error match ErrAmbiguous.
	Ambiguous bool
	// Err is the underlying error. Its text may hold the recipient's
	// address: never log it.
	Err error

	detail      string
	dataStarted bool // message data was written: a retry is no longer free
}

// Error describes the failure without personal data.
func (e *DeliveryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "send notice %s: %s: ", e.Key, e.Stage)
	switch {
	case e.Ambiguous:
		fmt.Fprintf(&b, "connection lost after the message data, before the server's reply: the message may have been delivered (%s)", e.detail)
	case e.Reply != "":
		b.WriteString(e.Reply)
	default:
		b.WriteString(e.detail)
	}
	switch {
	case e.Permanent:
		b.WriteString(" (permanent: do not retry)")
	case e.Ambiguous:
		b.WriteString(" (transient, ambiguous)")
	default:
		b.WriteString(" (transient: retry later)")
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *DeliveryError) Unwrap() error { return e.Err }

// Is matches ErrPermanent and ErrAmbiguous according to the flags.
func (e *DeliveryError) Is(target error) bool {
	return target == ErrPermanent && e.Permanent || target == ErrAmbiguous && e.Ambiguous
}

// scrub removes the recipient's address (servers often echo it) and caps the length.
func scrub(s, addr string) string {
	if addr != "" {
		s = regexp.MustCompile(`(?i)<?`+regexp.QuoteMeta(addr)+`>?`).ReplaceAllString(s, "<recipient>")
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// worker owns one go-mail Client (configuration only) and one connection.
type worker struct {
	s    *SMTPSender
	mc   *gomail.Client
	conn *smtp.Client
	raw  net.Conn // the connection under conn, to abort it
	tls  *tls.Config
	body []byte // the message being sent, reused from send to send
	data []byte // body as SMTP message data, reused likewise
	comp composer
}

func newWorker(s *SMTPSender) (*worker, error) {
	cfg := s.cfg
	w := &worker{s: s, tls: &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}}
	policy := gomail.TLSOpportunistic
	switch cfg.TLS {
	case TLSNone, TLSImplicit: // implicit TLS is done by dial, below
		policy = gomail.NoTLS
	case TLSStartTLS:
		policy = gomail.TLSMandatory
	}
	opts := []gomail.Option{
		gomail.WithPort(cfg.Port),
		gomail.WithTimeout(commandTimeout),
		gomail.WithTLSPolicy(policy),
		gomail.WithTLSConfig(w.tls),
		gomail.WithDialContextFunc(w.dial),
	}
	if cfg.Username != "" {
		// PLAIN and LOGIN refuse to run without TLS except to localhost.
		opts = append(opts, gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password),
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthCramMD5, gomail.SMTPAuthPlain, gomail.SMTPAuthLogin))
	}
	mc, err := gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("start smtp sender for %s: %w", cfg, err)
	}
	w.mc = mc
	return w, nil
}

// dial opens the TCP (or, for implicit TLS, TLS) connection and keeps it so
// that the worker can close it when a send must be aborted or a handshake
// fails (go-mail leaves it open then).
func (w *worker) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	var c net.Conn
	var err error
	if w.s.cfg.TLS == TLSImplicit {
		c, err = (&tls.Dialer{NetDialer: d, Config: w.tls}).DialContext(ctx, network, addr)
	} else {
		c, err = d.DialContext(ctx, network, addr)
	}
	if err == nil {
		w.raw = c
	}
	return c, err
}

func (w *worker) run() {
	defer w.s.wg.Done()
	idle := time.NewTimer(idleTimeout)
	defer idle.Stop()
	for {
		var idleC <-chan time.Time
		if w.conn != nil {
			idle.Reset(idleTimeout)
			idleC = idle.C
		}
		select {
		case <-w.s.quit:
			w.hangUp()
			return
		case j := <-w.s.jobs:
			idle.Stop()
			j.done <- w.send(j.ctx, j.msg)
		case <-idleC:
			w.hangUp()
		}
	}
}

func (w *worker) connect(ctx context.Context) error {
	w.raw = nil
	c, err := w.mc.DialToSMTPClientWithContext(ctx)
	if err != nil {
		if w.raw != nil {
			_ = w.raw.Close()
			w.raw = nil
		}
		return err
	}
	w.conn = c
	return nil
}

// drop abandons the connection without QUIT: its state is unknown.
func (w *worker) drop() {
	if w.raw != nil {
		_ = w.raw.Close()
	}
	w.conn, w.raw = nil, nil
}

// hangUp ends the connection politely with QUIT.
func (w *worker) hangUp() {
	if w.conn == nil {
		return
	}
	// QUIT is written and read directly, like the transaction's commands:
	// go-mail's Quit waits on its pipeline sequencer, which the direct
	// commands bypass, and would hang until the deadline.
	_ = w.raw.SetDeadline(time.Now().Add(time.Second))
	if err := w.conn.Text.PrintfLine("QUIT"); err == nil {
		_, _, _ = w.conn.Text.ReadResponse(221)
	}
	w.drop()
}

func (w *worker) send(ctx context.Context, m Message) error {
	var envTo string
	var err error
	w.body, envTo, err = w.comp.compose(w.body[:0], w.s.from, m, w.s.now())
	if err != nil {
		return err
	}
	envFrom := w.s.from.bracket
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("send notice %s: %w", m.Key, err)
		}
		fresh := w.conn == nil
		if fresh {
			if err := w.connect(ctx); err != nil {
				de := &DeliveryError{Key: m.Key, Stage: "connect", Err: err,
					detail: fmt.Sprintf("connect to %s: %s", w.s.cfg.Addr(), scrub(err.Error(), m.To))}
				var te *textproto.Error
				if errors.As(err, &te) {
					de.Code = te.Code
				}
				return de
			}
		}
		raw := w.raw
		_ = raw.SetDeadline(time.Now().Add(commandTimeout))
		stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
		de := w.transact(m, envFrom, envTo)
		aborted := !stop()
		if aborted {
			w.drop()
		}
		if de == nil {
			return nil
		}
		if de.Code == 0 && !de.dataStarted && !fresh && !aborted && attempt == 0 {
			// The pooled connection went stale (server time-out, restart,
			// a drop after the last reply): no message data went out on
			// it, so dial again and send once more.
			w.drop()
			continue
		}
		if aborted {
			de.Err = errors.Join(ctx.Err(), de.Err)
		}
		if de.Code == 0 || de.Code == 421 {
			w.drop()
		}
		return de
	}
}

// transact runs one mail transaction on the worker's connection: MAIL FROM,
// RCPT TO and DATA, pipelined in one write when the server offers PIPELINING
// (RFC 2920), then the dot-stuffed message and its final dot in another. That
// is two round trips a message where go-mail takes six (NOOP, MAIL, RCPT,
// DATA, data, RSET). After a refused command the transaction is reset, or the
// connection dropped when even that fails.
func (w *worker) transact(m Message, from, to string) *DeliveryError {
	text := w.conn.Text
	params := ""
	if ok, _ := w.conn.Extension("8BITMIME"); ok {
		params += " BODY=8BITMIME"
	}
	if ok, _ := w.conn.Extension("SMTPUTF8"); ok {
		params += " SMTPUTF8"
	}
	pipelining, _ := w.conn.Extension("PIPELINING")
	cmds := [...]struct {
		line, stage string
		expect      int
	}{
		{"MAIL FROM:" + from + params, "MAIL FROM", 250},
		{"RCPT TO:" + to, "RCPT TO", 25},
		{"DATA", "DATA", 354},
	}
	fail := func(stage string, err error) *DeliveryError {
		de := &DeliveryError{Key: m.Key, Stage: stage, Err: err}
		var te *textproto.Error
		if errors.As(err, &te) {
			de.Code = te.Code
			de.Reply = scrub(fmt.Sprintf("%03d %s", te.Code, strings.Join(strings.Fields(te.Msg), " ")), m.To)
			de.Permanent = te.Code >= 500 && te.Code <= 599
		} else {
			de.detail = scrub(err.Error(), m.To)
		}
		return de
	}
	// Replies are read in order; the first refusal decides the error, and
	// the rest are still read to keep the connection in step.
	var first *DeliveryError
	sent, dataAccepted := 0, false
	for i, c := range cmds {
		if _, err := text.W.WriteString(c.line + "\r\n"); err != nil {
			return fail(c.stage, err)
		}
		if pipelining && i < len(cmds)-1 {
			continue
		}
		if err := text.W.Flush(); err != nil {
			return fail(cmds[sent].stage, err) // the first command not yet answered
		}
		for ; sent <= i; sent++ {
			_, _, err := text.ReadResponse(cmds[sent].expect)
			if err == nil {
				dataAccepted = sent == len(cmds)-1
				continue
			}
			var te *textproto.Error
			if !errors.As(err, &te) {
				// No reply: the connection is gone (a server may hang up
				// after a 421); the caller drops it.
				if first != nil {
					w.drop()
					return first
				}
				return fail(cmds[sent].stage, err)
			}
			if first == nil {
				first = fail(cmds[sent].stage, err)
			}
		}
		if first != nil {
			break
		}
	}
	if first != nil {
		if dataAccepted {
			// DATA was accepted (354) although an earlier command was
			// refused: the server's state is unclear, so abandon it.
			first.Code, first.Permanent = 0, false
			first.detail = first.Reply + "; the server accepted DATA after a refusal"
			first.Reply = ""
			return first
		}
		if first.Code != 421 {
			// Written directly, like the commands above: text.Cmd would
			// take a pipeline id whose response nobody ends.
			if err := text.PrintfLine("RSET"); err != nil {
				w.drop()
			} else if _, _, err := text.ReadResponse(250); err != nil {
				w.drop()
			}
		}
		return first
	}
	// The whole message data in one write: bufio passes a write larger than
	// its buffer straight through when nothing is buffered, as here.
	w.data = appendDotStuffed(w.data[:0], w.body)
	_, err := text.W.Write(w.data)
	if err == nil {
		err = text.W.Flush()
	}
	if err != nil {
		de := fail("message data", err)
		de.dataStarted = true
		return de
	}
	if _, _, err := text.ReadResponse(250); err != nil {
		de := fail("end of DATA", err)
		de.dataStarted = true
		de.Ambiguous = de.Code == 0
		return de
	}
	return nil
}

// appendDotStuffed appends msg as SMTP message data (RFC 5321 4.5.2): CRLF
// line ends, a leading dot doubled, and the final ".".
func appendDotStuffed(dst, msg []byte) []byte {
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) > 0 && line[0] == '.' {
			dst = append(dst, '.')
		}
		dst = append(dst, line...)
		dst = append(dst, '\r', '\n')
	}
	return append(dst, '.', '\r', '\n')
}
