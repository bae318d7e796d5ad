package mailer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"regexp"
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
	from  *mail.Address
	now   func() time.Time
	limit *rate.Limiter
	jobs  chan job
	quit  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	// chain lets a worker send a message's data with the next message's
	// envelope (see worker.deliver); off only to measure the difference.
	chain bool
	// pipelined counts the messages whose envelope went out with the
	// previous message's data.
	pipelined atomic.Int64
	// took is a moving average of how long a connection is busy with one
	// message, in nanoseconds (0 until the first message); see Capacity.
	took atomic.Int64
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
	return newSMTP(cfg, from, now, make(chan job))
}

// newSMTP is NewSMTP taking its jobs from the given channel: a test fills a
// buffered one before the workers start to control what they find waiting.
func newSMTP(cfg SMTPConfig, from string, now func() time.Time, jobs chan job) (*SMTPSender, error) {
	if cfg.Host == "" || cfg.Port == 0 {
		return nil, fmt.Errorf("start smtp sender: no host and port: set RENEWALS_SMTP_URL, e.g. %s", urlExample)
	}
	snd, err := parseFrom(from)
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
	s := &SMTPSender{cfg: cfg, from: snd, now: now, jobs: jobs, quit: make(chan struct{}), chain: true}
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
		byRate := max(1, int(s.cfg.Rate*d.Seconds()))
		if n == 0 || byRate < n {
			n = byRate
		}
	}
	return n
}

// observe folds one message's time on a connection into the average.
func (s *SMTPSender) observe(took time.Duration) {
	old := time.Duration(s.took.Load())
	if old == 0 {
		s.took.Store(int64(took))
		return
	}
	s.took.Store(int64(old + (took-old)/8))
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
	// The connection's extensions, looked up once.
	params     string // MAIL FROM parameters: BODY=8BITMIME, SMTPUTF8
	pipelining bool

	bodies [2][]byte // messages taken on, reused from send to send
	data   []byte    // what goes out after DATA, reused likewise
	cmd    []byte    // one envelope command
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
			w.serve(j)
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
	w.params = ""
	if ok, _ := c.Extension("8BITMIME"); ok {
		w.params += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		w.params += " SMTPUTF8"
	}
	w.pipelining, _ = c.Extension("PIPELINING")
	return nil
}

// noStartTLS reports whether err is go-mail's refusal to go on without
// STARTTLS (TLSMandatory) on a server whose EHLO does not offer it.
// go-mail has no error value for it, so its text is matched; a test holds
// the two together.
func noStartTLS(err error) bool {
	return strings.Contains(err.Error(), "does not support STARTTLS")
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

// pending is a message a worker has taken on, composed and waiting for its
// result.
type pending struct {
	job
	rcpt    string      // the envelope recipient, <address>
	slot    int         // the worker's body buffer that holds the message
	retried bool        // it was sent again on a new connection already
	stop    func() bool // disarms the abort on ctx; see arm
	taken   time.Time   // when the worker took it on
}

// serve delivers j and, while the server offers PIPELINING and more jobs
// are waiting, the messages it takes on after j (see deliver).
func (w *worker) serve(j job) {
	p := &pending{job: j, taken: time.Now()}
	if err := w.compose(p, 0); err != nil {
		j.done <- err
		return
	}
	for p != nil {
		p = w.deliver(p)
	}
}

func (w *worker) compose(p *pending, slot int) error {
	msg, err := newMsg(w.s.from, p.msg, w.s.now())
	if err != nil {
		return err
	}
	buf := bytes.NewBuffer(w.bodies[slot][:0])
	if _, err := msg.WriteTo(buf); err != nil {
		return fmt.Errorf("build notice %s: %w: %w", p.msg.Key, err, ErrPermanent)
	}
	to, _ := singleAddress(p.msg.To) // newMsg checked it
	w.bodies[slot], p.rcpt, p.slot = buf.Bytes(), to.String(), slot
	return nil
}

// deliver sends p and answers its caller. A server that offers PIPELINING
// gets the message data of p in one write with the envelope (MAIL FROM,
// RCPT TO, DATA) of the next waiting message, q, when there is one (RFC
// 2920 lets message data start a pipelined group); p's result is read and
// answered first, then q's envelope replies, and q's data goes out with the
// envelope of the message after it, and so on. Each message keeps the
// outcomes it would have alone: a refusal of q's envelope is q's; losing the
// connection after p's data is ambiguous for p only, while q, whose data
// never went out, is returned to be sent again on a new connection.
func (w *worker) deliver(p *pending) (again *pending) {
	for {
		if err := p.ctx.Err(); err != nil {
			p.done <- fmt.Errorf("send notice %s: %w", p.msg.Key, err)
			return nil
		}
		fresh := w.conn == nil
		if fresh {
			if err := w.connect(p.ctx); err != nil {
				de := &DeliveryError{Key: p.msg.Key, Stage: "connect", Err: err,
					detail: fmt.Sprintf("connect to %s: %s", w.s.cfg.Addr(), scrub(err.Error(), p.msg.To))}
				var te *textproto.Error
				if errors.As(err, &te) {
					de.Code = te.Code
				}
				if w.s.cfg.TLS == TLSStartTLS && noStartTLS(err) {
					// The relay's EHLO answer is its configuration: no
					// retry changes it, so fail now with what to change
					// rather than retry for hours.
					de.Permanent = true
					de.detail = fmt.Sprintf("the SMTP relay at %s does not offer STARTTLS, which RENEWALS_SMTP_URL requires (tls=starttls): use a relay with TLS (tls=tls for implicit TLS, port 465), or tls=opportunistic to send unencrypted to this one", w.s.cfg.Addr())
				}
				p.done <- de
				return nil
			}
		}
		if err := p.msg.begin(); err != nil {
			p.done <- err
			return nil
		}
		_ = w.raw.SetDeadline(time.Now().Add(commandTimeout))
		w.arm(p)
		de := w.envelope(p, false)
		if de == nil {
			break
		}
		aborted := w.disarm(p)
		if de.Code == 0 && !fresh && !aborted && !p.retried {
			// The pooled connection went stale (server time-out, restart,
			// a drop after the last reply): no message data went out on
			// it, so dial again and send once more.
			w.drop()
			p.retried = true
			continue
		}
		w.finish(p, de, aborted)
		return nil
	}
	// The server accepted p's envelope and waits for its data. From here on
	// p is never sent again: its data is (being) written.
	for {
		var q *pending
		if w.pipelining && w.s.chain {
			q = w.takeNext(1 - p.slot)
		}
		// The whole message data, and q's envelope, in one write.
		w.data = appendDotStuffed(w.data[:0], w.bodies[p.slot])
		end := len(w.data)
		if q != nil {
			for i := range 3 {
				w.data = w.appendCommand(w.data, i, q)
			}
			w.s.pipelined.Add(1)
		}
		_ = w.raw.SetDeadline(time.Now().Add(commandTimeout))
		written, err := w.write(w.data)
		if err != nil {
			de := w.fail(p, "message data", err)
			if written >= end {
				// Only q's envelope failed to go out: p's final dot did.
				de.Stage, de.Ambiguous = "end of DATA", true
			}
			w.finish(p, de, w.disarm(p)) // drops the connection (no reply code)
			return q
		}
		_, _, err = w.conn.Text.ReadResponse(250)
		var de *DeliveryError
		if err != nil {
			de = w.fail(p, "end of DATA", err)
			de.Ambiguous = de.Code == 0
		}
		w.finish(p, de, w.disarm(p))
		if q == nil {
			return nil
		}
		if w.conn == nil {
			// p's connection is gone (or closing after a 421) before q's
			// replies: q's data never went out, so it goes again.
			return q
		}
		w.arm(q)
		if de := w.envelope(q, true); de != nil {
			aborted := w.disarm(q)
			if de.Code == 0 && !aborted && !q.retried {
				w.drop()
				q.retried = true
				return q
			}
			w.finish(q, de, aborted)
			return nil
		}
		p = q
	}
}

// takeNext takes on a job that is waiting for a worker, if there is one
// and the sender is open, composed into the body buffer slot. Jobs whose
// context ended or that cannot be composed are answered on the way.
func (w *worker) takeNext(slot int) *pending {
	for {
		select {
		case <-w.s.quit:
			return nil
		default:
		}
		var j job
		select {
		case j = <-w.s.jobs:
		default:
			return nil
		}
		if err := j.ctx.Err(); err != nil {
			j.done <- fmt.Errorf("send notice %s: %w", j.msg.Key, err)
			continue
		}
		p := &pending{job: j, taken: time.Now()}
		if err := w.compose(p, slot); err != nil {
			j.done <- err
			continue
		}
		if err := p.msg.begin(); err != nil {
			j.done <- err
			continue
		}
		return p
	}
}

// arm makes the end of p's context abort the connection, so that a send
// stuck on a silent server ends with its caller's context.
func (w *worker) arm(p *pending) {
	raw := w.raw
	p.stop = context.AfterFunc(p.ctx, func() { _ = raw.Close() })
}

// disarm undoes arm and reports whether p's context aborted the connection.
func (w *worker) disarm(p *pending) (aborted bool) {
	aborted = !p.stop()
	p.stop = nil
	return aborted
}

// finish answers p's caller with de (nil: delivered) and drops the
// connection when its state is unknown: no reply, a 421, or an abort.
func (w *worker) finish(p *pending, de *DeliveryError, aborted bool) {
	if aborted {
		w.drop()
	}
	if de == nil {
		w.s.observe(time.Since(p.taken))
		p.done <- nil
		return
	}
	if aborted {
		de.Err = errors.Join(p.ctx.Err(), de.Err)
	}
	if de.Code == 0 || de.Code == 421 {
		w.drop()
	}
	p.done <- de
}

// fail makes the DeliveryError of p at stage, with the server's reply when
// err is one and the recipient's address scrubbed from the text.
func (w *worker) fail(p *pending, stage string, err error) *DeliveryError {
	de := &DeliveryError{Key: p.msg.Key, Stage: stage, Err: err}
	var te *textproto.Error
	if errors.As(err, &te) {
		de.Code = te.Code
		de.Reply = scrub(fmt.Sprintf("%03d %s", te.Code, strings.Join(strings.Fields(te.Msg), " ")), p.msg.To)
		de.Permanent = te.Code >= 500 && te.Code <= 599
	} else {
		de.detail = scrub(err.Error(), p.msg.To)
	}
	return de
}

// write writes b and flushes it, and returns how much of b went out.
func (w *worker) write(b []byte) (int, error) {
	tw := w.conn.Text.W
	n, err := tw.Write(b) // passed straight through when b is larger than the (empty) buffer
	if err == nil {
		err = tw.Flush()
	}
	return n - tw.Buffered(), err // a failed Flush keeps what it did not write
}

// envelope stages and the reply codes they expect (a 251 counts for RCPT).
var envelope = [3]struct {
	stage  string
	expect int
}{{"MAIL FROM", 250}, {"RCPT TO", 25}, {"DATA", 354}}

// appendCommand appends envelope command i of p: MAIL FROM, RCPT TO or DATA.
func (w *worker) appendCommand(b []byte, i int, p *pending) []byte {
	switch i {
	case 0:
		b = append(append(append(append(b, "MAIL FROM:<"...), w.s.from.Address...), '>'), w.params...)
	case 1:
		b = append(append(b, "RCPT TO:"...), p.rcpt...)
	default:
		b = append(b, "DATA"...)
	}
	return append(b, '\r', '\n')
}

// envelope runs the start of p's mail transaction: MAIL FROM, RCPT TO and
// DATA, pipelined in one write when the server offers PIPELINING (RFC
// 2920), else one at a time; with written, the commands went out already
// (after the previous message's data) and only their replies are read. A
// nil result means the server answered DATA with 354 and waits for the
// message data. After a refused command the transaction is reset, or the
// connection dropped when even that fails or when the server answered DATA
// with 354 all the same. With the message data in one
// more write, that is two round trips a message where go-mail takes six
// (NOOP, MAIL, RCPT, DATA, data, RSET).
func (w *worker) envelope(p *pending, written bool) *DeliveryError {
	text := w.conn.Text
	// Replies are read in order; the first refusal decides the error, and
	// the rest are still read to keep the connection in step.
	var first *DeliveryError
	read, dataAccepted := 0, false
	for i, c := range envelope {
		if !written {
			w.cmd = w.appendCommand(w.cmd[:0], i, p)
			if _, err := text.W.Write(w.cmd); err != nil {
				return w.fail(p, c.stage, err)
			}
			if w.pipelining && i < len(envelope)-1 {
				continue
			}
			if err := text.W.Flush(); err != nil {
				return w.fail(p, envelope[read].stage, err) // the first command not yet answered
			}
		} else if i < len(envelope)-1 {
			continue
		}
		for ; read <= i; read++ {
			_, _, err := text.ReadResponse(envelope[read].expect)
			if err == nil {
				dataAccepted = read == len(envelope)-1
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
				return w.fail(p, envelope[read].stage, err)
			}
			if first == nil {
				first = w.fail(p, envelope[read].stage, err)
			}
		}
		if first != nil {
			break
		}
	}
	if first == nil {
		return nil
	}
	if dataAccepted {
		// DATA was accepted (354) although an earlier command was refused,
		// against RFC 2920: the refusal still decides the message (a 5xx to
		// RCPT TO is permanent whatever follows). The server now waits for
		// data it has no recipient for: send none, not even the ending "."
		// (it might deliver an empty message), and drop the connection,
		// which aborts the transaction.
		w.drop()
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
