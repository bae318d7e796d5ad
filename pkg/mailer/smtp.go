package mailer

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
	"golang.org/x/time/rate"

	"renewals/pkg/subscription"
)

const (
	// commandTimeout bounds one send (all commands of a transaction) and one
	// dial with its handshake and authentication.
	commandTimeout = 30 * time.Second
	// idleTimeout closes a connection unused this long, before the server's
	// own time-out does (RFC 5321 asks servers for at least 5 minutes).
	idleTimeout = 60 * time.Second
)

// SMTPSender delivers messages through a pool of workers, each with its own
// go-mail Client and one SMTP connection that it reuses from message to
// message and opens again after an error. Workers share no go-mail state:
// one go-mail Client used from several goroutines is not safe.
type SMTPSender struct {
	cfg   SMTPConfig
	from  *mail.Address
	now   func() time.Time
	limit *rate.Limiter
	jobs  chan job
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	// waiting counts the workers waiting for a message.
	waiting atomic.Int32
	// env is the envelope sender and signing; see SetEnvelope.
	env Envelope
	// took is a moving average of the time a connection spends on one
	// message, in nanoseconds (0 until the first); see Capacity.
	took atomic.Int64
}

type job struct {
	ctx  context.Context
	msg  Message
	done chan error
	// begun is Begin's result, under way once a worker took the job.
	begun chan error
}

// NewSMTP starts cfg.Workers workers (DefaultWorkers when 0). Connections
// are opened lazily, on each worker's first message, so a server that is
// down at start-up fails sends (transiently), not start-up. from is the From
// address; now stamps the Date header and may be nil for the wall clock.
func NewSMTP(cfg SMTPConfig, from string, now func() time.Time) (*SMTPSender, error) {
	if cfg.Host == "" || cfg.Port == 0 {
		return nil, fmt.Errorf("start smtp sender: no host and port: set RENEWALS_SMTP_URL, e.g. %s", urlExample)
	}
	f, err := parseAddress(from, true)
	if err != nil {
		return nil, fmt.Errorf("start smtp sender: From address %q (RENEWALS_MAIL_FROM): %w", from, err)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	cfg.TLS = cmp.Or(cfg.TLS, TLSOpportunistic)
	if now == nil {
		now = time.Now
	}
	s := &SMTPSender{cfg: cfg, from: f, now: now, jobs: make(chan job), quit: make(chan struct{})}
	if cfg.Rate > 0 {
		s.limit = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	for range cfg.Workers {
		w, err := newWorker(s)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.wg.Add(1)
		go w.run()
	}
	return s, nil
}

// SetEnvelope sets the envelope sender and signing of the messages; call it
// before the first Send.
func (s *SMTPSender) SetEnvelope(e Envelope) { s.env = e }

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
		return <-j.done
	case <-s.quit:
		return fmt.Errorf("send notice %s: %w", m.Key, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("send notice %s: wait for a free connection: %w", m.Key, ctx.Err())
	}
}

// Capacity returns how many messages the sender can start within d: its
// connections times the messages each has been getting through in d, and
// no more than the rate limit allows. It is 0 (no bound known) until a
// message went out, unless a rate limit is set.
func (s *SMTPSender) Capacity(d time.Duration) int {
	n := 0
	if took := time.Duration(s.took.Load()); took > 0 {
		n = s.cfg.Workers * max(1, int(d/took))
	}
	if s.cfg.Rate > 0 {
		if byRate := max(1, int(s.cfg.Rate*d.Seconds())); n == 0 || byRate < n {
			n = byRate
		}
	}
	return n
}

// observe folds one message's time on a connection into the average.
func (s *SMTPSender) observe(took time.Duration) {
	if old := time.Duration(s.took.Load()); old > 0 {
		took = old + (took-old)/8
	}
	s.took.Store(int64(took))
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

	detail string
}

// Error describes the failure without personal data.
func (e *DeliveryError) Error() string {
	what, kind := cmp.Or(e.Reply, e.detail), "transient: retry later"
	switch {
	case e.Permanent:
		kind = "permanent: do not retry"
	case e.Ambiguous:
		what = "connection lost after the message data, before the server's reply: the message may have been delivered (" + e.detail + ")"
		kind = "transient, ambiguous"
	}
	return fmt.Sprintf("send notice %s: %s: %s (%s)", e.Key, e.Stage, what, kind)
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

// stages names the step of each of go-mail's failure reasons.
var stages = map[gomail.SendErrReason]string{
	gomail.ErrConnCheck: "connection check", gomail.ErrSMTPMailFrom: "MAIL FROM", gomail.ErrSMTPRcptTo: "RCPT TO",
	gomail.ErrSMTPData: "DATA", gomail.ErrWriteContent: "message data", gomail.ErrSMTPDataClose: "end of DATA",
}

// classify turns go-mail's error for m into a DeliveryError. Only a 5xx
// reply is permanent (go-mail's IsTemp is false for a reset or a time-out
// too); no reply to the end of the data is the RFC 1047 gap: ambiguous.
func classify(m Message, err error) *DeliveryError {
	de := &DeliveryError{Key: m.Key, Stage: "send", Err: err, detail: scrub(err.Error(), m.To)}
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return de
	}
	de.Stage = cmp.Or(stages[se.Reason], de.Stage)
	if de.Code = se.ErrorCode(); de.Code == 0 {
		de.Ambiguous = se.Reason == gomail.ErrSMTPDataClose
		return de
	}
	// go-mail keeps the reply unexported; its Error text holds it after the
	// reason as textproto.Error writes it: the code, then the text quoted.
	text := ""
	if rest := strings.TrimPrefix(se.Error(), se.Reason.String()+": "); len(rest) > 4 {
		if q, err := strconv.QuotedPrefix(rest[4:]); err == nil {
			text, _ = strconv.Unquote(q)
		}
	}
	de.Reply = scrub(strings.TrimSpace(fmt.Sprintf("%03d %s", de.Code, strings.Join(strings.Fields(text), " "))), m.To)
	de.Permanent = de.Code >= 500 && de.Code <= 599
	return de
}

// worker owns one go-mail Client (configuration only) and one connection.
type worker struct {
	s    *SMTPSender
	mc   *gomail.Client
	conn *smtp.Client
	raw  net.Conn // the connection under conn, to abort it
	tls  *tls.Config
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
	opts := []gomail.Option{gomail.WithPort(cfg.Port), gomail.WithTimeout(commandTimeout),
		gomail.WithTLSPolicy(policy), gomail.WithTLSConfig(w.tls), gomail.WithDialContextFunc(w.dial),
		// A stale connection fails at MAIL FROM, before any data, and the
		// message goes again on a new one: a NOOP first is a wasted round trip.
		gomail.WithoutNoop(),
		// Nor an RSET after each message: the server's 250 to the end of
		// the data ends the transaction and clears its state (RFC 5321,
		// 4.1.1.4), so the next MAIL FROM may follow at once. go-mail skips
		// only that RSET; after a refused MAIL FROM or RCPT TO it still
		// sends one.
		gomail.WithoutRset()}
	if cfg.Username != "" {
		// PLAIN and LOGIN refuse to run without TLS except to localhost.
		opts = append(opts, gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password),
			gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthSCRAMSHA256, gomail.SMTPAuthSCRAMSHA1,
				gomail.SMTPAuthCramMD5, gomail.SMTPAuthPlain, gomail.SMTPAuthLogin))
	}
	var err error
	if w.mc, err = gomail.NewClient(cfg.Host, opts...); err != nil {
		return nil, fmt.Errorf("start smtp sender for %s: %w", cfg, err)
	}
	return w, nil
}

// dial opens the TCP (or, for implicit TLS, TLS) connection and keeps it, to
// abort a send or to close it after a failed handshake (go-mail leaves it open).
func (w *worker) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	if w.s.cfg.TLS == TLSImplicit {
		c, err = (&tls.Dialer{Config: w.tls}).DialContext(ctx, network, addr)
	} else {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	w.raw = c
	return c, err
}

func (w *worker) run() {
	defer w.s.wg.Done()
	idle := time.NewTimer(idleTimeout)
	defer idle.Stop()
	// next is a message taken while the one before it was on the wire, so
	// that its Begin (a ledger round trip) ran beside that transaction
	// instead of in front of its own.
	var next *job
	for {
		cur := next
		next = nil
		if cur != nil {
			select {
			case <-w.s.quit:
				<-cur.begun
				cur.done <- fmt.Errorf("send notice %s: %w", cur.msg.Key, ErrClosed)
				w.hangUp()
				return
			default:
			}
		} else {
			var idleC <-chan time.Time
			if w.conn != nil {
				idle.Reset(idleTimeout)
				idleC = idle.C
			}
			w.s.waiting.Add(1)
			select {
			case <-w.s.quit:
				w.s.waiting.Add(-1)
				w.hangUp()
				return
			case j := <-w.s.jobs:
				w.s.waiting.Add(-1)
				idle.Stop()
				cur = take(j)
			case <-idleC:
				w.s.waiting.Add(-1)
				w.hangUp()
				continue
			}
		}
		// Only when every worker is busy: a worker waiting for a message
		// would start it at once.
		if w.s.waiting.Load() == 0 {
			select {
			case j := <-w.s.jobs:
				next = take(j)
			default:
			}
		}
		start := time.Now()
		err := w.deliver(cur)
		if err == nil {
			w.s.observe(time.Since(start))
		}
		cur.done <- err
	}
}

// take starts j's Begin on its own goroutine.
func take(j job) *job {
	j.begun = make(chan error, 1)
	if j.msg.Begin == nil {
		j.begun <- nil
	} else {
		go func() { j.begun <- j.msg.begin() }()
	}
	return &j
}

// connect dials, greets, starts TLS and authenticates as configured.
func (w *worker) connect(ctx context.Context, m Message) error {
	c, err := w.mc.DialToSMTPClientWithContext(ctx)
	if err == nil {
		w.conn = c
		return nil
	}
	w.drop()
	de := &DeliveryError{Key: m.Key, Stage: "connect", Err: err,
		detail: fmt.Sprintf("connect to %s: %s", w.s.cfg.Addr(), scrub(err.Error(), m.To))}
	var te *textproto.Error
	if errors.As(err, &te) {
		de.Code = te.Code
	}
	// go-mail has no error value for a server without STARTTLS under
	// TLSMandatory, so its text is matched; a test holds the two together.
	// The relay's EHLO is its configuration, which no retry changes: fail
	// now, saying what to change, rather than retry for hours.
	if w.s.cfg.TLS == TLSStartTLS && strings.Contains(err.Error(), "does not support STARTTLS") {
		de.Permanent = true
		de.detail = fmt.Sprintf("the SMTP relay at %s does not offer STARTTLS, which RENEWALS_SMTP_URL requires (tls=starttls): use a relay with TLS (tls=tls for implicit TLS, port 465), or tls=opportunistic to send unencrypted to this one", w.s.cfg.Addr())
	}
	return de
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
	if w.conn != nil {
		_ = w.conn.UpdateDeadline(time.Second)
		_ = w.mc.CloseWithSMTPClient(w.conn)
	}
	w.drop()
}

// deliver composes j's message and sends it on the worker's connection,
// opening one when there is none; Begin has run before the first
// transaction (see worker.run) and runs again before each retry. A
// reused connection that fails with no reply before any of the data went
// out (the server timed it out, restarted, or hung up after its last reply)
// is replaced and the message sent once more on the new one.
func (w *worker) deliver(j *job) error {
	// Begin ran when the worker took the message; a new attempt on a new
	// connection runs it again.
	if err := <-j.begun; err != nil {
		return err
	}
	msg, err := newMsg(w.s.from, j.msg, w.s.now(), w.s.env)
	if err != nil {
		return err
	}
	for retried := false; ; retried = true {
		if err := j.ctx.Err(); err != nil {
			return fmt.Errorf("send notice %s: %w", j.msg.Key, err)
		}
		fresh := w.conn == nil
		if fresh {
			if err := w.connect(j.ctx, j.msg); err != nil {
				return err
			}
		}
		if retried {
			if err := j.msg.begin(); err != nil {
				return err
			}
		}
		// The end of j's context aborts the connection, so that a send
		// stuck on a silent server ends with its caller's context.
		raw := w.raw
		stop := context.AfterFunc(j.ctx, func() { _ = raw.Close() })
		err := w.mc.SendWithSMTPClient(w.conn, msg)
		aborted := !stop()
		if err == nil || msg.IsDelivered() {
			// An error after the server took the data (its RSET failed)
			// leaves the message delivered and the connection unsure.
			if err != nil || aborted {
				w.drop()
			}
			return nil
		}
		de := classify(j.msg, err)
		if aborted {
			de.Err = errors.Join(j.ctx.Err(), de.Err)
		}
		if aborted || de.Code == 0 || de.Code == 421 {
			w.drop()
		}
		switch de.Stage {
		case "connection check", "MAIL FROM", "RCPT TO", "DATA": // none of the data went out
			if de.Code == 0 && !fresh && !aborted && !retried {
				continue
			}
		}
		return de
	}
}
