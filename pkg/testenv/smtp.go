package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTPServer is an in-process SMTP server owned by one test. It accepts every
// message unless a Fault says otherwise, records what it accepted, counts the
// connections it was given and is closed by t.Cleanup. It offers no TLS and no
// AUTH: connect with tls=none.
type SMTPServer struct {
	// Addr is the server's "host:port" on the loopback interface.
	Addr string
	// Host and Port are Addr split.
	Host string
	Port int

	t      testing.TB
	srv    *smtp.Server
	mu     sync.Mutex
	msgs   []SMTPMessage
	faults []*Fault
	conns  map[int]*trackedConn
	nconns int
	// changed is closed and replaced whenever a message is recorded, so that
	// waiters wake without polling.
	changed chan struct{}
	// delay is how long the server takes over each message; see SetDelay.
	delay  atomic.Int64
	closed chan struct{}
}

// SMTPMessage is one message the server accepted: the envelope and the raw
// data as the client sent it (dot-unstuffed, CRLF line ends).
type SMTPMessage struct {
	From string
	To   []string
	Data []byte
	// Conn numbers the connection the message came on, from 1, in the order
	// the server accepted connections.
	Conn int
}

// Parse reads the message's header and body.
func (m SMTPMessage) Parse() (*mail.Message, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil, fmt.Errorf("parse message from %s: %w", m.From, err)
	}
	return msg, nil
}

// FaultStage is the SMTP command a Fault applies to.
type FaultStage int

// The stages at which a Fault can strike.
const (
	// StageMail is the MAIL FROM command. A Fault with a Rcpt never matches
	// here, since no recipient is known yet.
	StageMail FaultStage = iota + 1
	// StageRcpt is each RCPT TO command.
	StageRcpt
	// StageData is the end of the DATA payload, after the server read it all.
	StageData
)

// FaultAction is what the server does when a Fault strikes.
type FaultAction int

// The actions of a Fault.
const (
	// Reply answers with Fault.Code (and Fault.Message) instead of accepting.
	// After a 421 the server closes the connection, as RFC 5321 says.
	Reply FaultAction = iota
	// DropBeforeReply reads the whole DATA payload, then closes the
	// connection without a reply: the RFC 1047 gap, where the client cannot
	// know whether the message was taken. With Deliver set the message is
	// recorded as accepted (a duplicate if the client sends it again);
	// otherwise it is thrown away. Only at StageData.
	DropBeforeReply
	// DropAfterReply accepts the message with 250, then closes the connection,
	// so the client's next command (its RSET) fails although the message was
	// delivered. Only at StageData.
	DropAfterReply
)

// Fault makes the server misbehave for matching attempts.
type Fault struct {
	// Rcpt restricts the fault to transactions with this recipient (compared
	// without case); empty matches any.
	Rcpt string
	// Stage is where the fault strikes; StageData is assumed for the drop actions.
	Stage FaultStage
	// Action is what happens; the zero value is Reply.
	Action FaultAction
	// Code is the reply code for Reply, e.g. 421, 451 or 550.
	Code int
	// Message is the reply text; a standard one for Code when empty.
	Message string
	// Deliver, with DropBeforeReply, records the message as accepted.
	Deliver bool
	// Times is how many matching attempts the fault strikes; 0 means every one.
	Times int
}

// SMTP starts an in-process SMTP server on a free loopback port and returns
// it. The server is closed when the test ends.
func SMTP(t testing.TB) *SMTPServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("start smtp server: listen: %v", err)
	}
	s := &SMTPServer{
		Addr:    l.Addr().String(),
		Host:    "127.0.0.1",
		Port:    l.Addr().(*net.TCPAddr).Port,
		t:       t,
		conns:   map[int]*trackedConn{},
		changed: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "localhost"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxRecipients = 100
	go func() { _ = s.srv.Serve(&trackingListener{Listener: l, s: s}) }()
	t.Cleanup(func() {
		close(s.closed)
		_ = s.srv.Close()
	})
	return s
}

// SetDelay makes the server take d over each message before it answers the
// end of its data, as a slow or throttling relay does; 0 answers at once.
func (s *SMTPServer) SetDelay(d time.Duration) { s.delay.Store(int64(d)) }

// URL returns the server as a RENEWALS_SMTP_URL: smtp://127.0.0.1:<port>?tls=none.
func (s *SMTPServer) URL() string {
	return "smtp://" + s.Addr + "?tls=none"
}

// Inject adds a fault. Faults are checked in the order they were added; the
// first that matches an attempt strikes.
func (s *SMTPServer) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Action != Reply {
		f.Stage = StageData
	}
	if f.Stage == 0 {
		f.Stage = StageRcpt
	}
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *SMTPServer) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Messages returns a copy of every message accepted so far, in order.
func (s *SMTPServer) Messages() []SMTPMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SMTPMessage(nil), s.msgs...)
}

// WaitFor waits until at least n messages were accepted and returns them all.
// It fails the test after timeout; call it from the test's goroutine.
func (s *SMTPServer) WaitFor(n int, timeout time.Duration) []SMTPMessage {
	s.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.msgs), s.changed
		if got >= n {
			out := append([]SMTPMessage(nil), s.msgs...)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			s.t.Fatalf("smtp server: %d of %d messages accepted after %v", got, n, timeout)
			return nil
		}
	}
}

// Connections returns how many connections the server accepted in all.
func (s *SMTPServer) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nconns
}

// OpenConnections returns how many connections are open now.
func (s *SMTPServer) OpenConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// DropConnections closes every open connection, as a server restart or an
// idle time-out would; clients see it on their next command.
func (s *SMTPServer) DropConnections() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// strike returns the first fault matching the stage and recipients, counting
// the attempt against it, or nil.
func (s *SMTPServer) strike(stage FaultStage, rcpts []string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Stage != stage || !f.matches(rcpts) {
			continue
		}
		hit := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		return &hit
	}
	return nil
}

func (f *Fault) matches(rcpts []string) bool {
	if f.Rcpt == "" {
		return true
	}
	for _, r := range rcpts {
		if strings.EqualFold(r, f.Rcpt) {
			return true
		}
	}
	return false
}

func (f *Fault) reply() *smtp.SMTPError {
	msg := f.Message
	if msg == "" {
		switch {
		case f.Code == 421:
			msg = "Service not available, closing transmission channel"
		case f.Code == 451:
			msg = "Requested action aborted: local error in processing"
		case f.Code == 550:
			msg = "Requested action not taken: mailbox unavailable"
		case f.Code >= 500:
			msg = "Requested action not taken"
		default:
			msg = "Requested action aborted: try again later"
		}
	}
	return &smtp.SMTPError{Code: f.Code, EnhancedCode: smtp.EnhancedCode{f.Code / 100, 0, 0}, Message: msg}
}

func (s *SMTPServer) record(m SMTPMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *SMTPServer) newSession(c *smtp.Conn) (smtp.Session, error) {
	tc, ok := c.Conn().(*trackedConn)
	if !ok {
		return nil, errors.New("smtp test server: connection not tracked")
	}
	return &session{s: s, conn: tc}, nil
}

type session struct {
	s    *SMTPServer
	conn *trackedConn
	from string
	to   []string
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if f := ss.s.strike(StageMail, nil); f != nil {
		ss.conn.closeAfterReply.Store(f.Code == 421)
		return f.reply()
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := ss.s.strike(StageRcpt, []string{to}); f != nil {
		ss.conn.closeAfterReply.Store(f.Code == 421)
		return f.reply()
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if d := time.Duration(ss.s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ss.s.closed:
			return errors.New("server closed")
		}
	}
	m := SMTPMessage{From: ss.from, To: append([]string(nil), ss.to...), Data: data, Conn: ss.conn.id}
	f := ss.s.strike(StageData, ss.to)
	if f == nil {
		ss.s.record(m)
		return nil
	}
	switch f.Action {
	case DropBeforeReply:
		if f.Deliver {
			ss.s.record(m)
		}
		_ = ss.conn.Close()
		return errors.New("connection dropped by fault")
	case DropAfterReply:
		ss.s.record(m)
		ss.conn.closeAfterReply.Store(true)
		return nil
	default:
		ss.conn.closeAfterReply.Store(f.Code == 421)
		return f.reply()
	}
}

// trackingListener numbers and counts the connections it accepts.
type trackingListener struct {
	net.Listener
	s *SMTPServer
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.nconns++
	tc := &trackedConn{Conn: c, id: l.s.nconns, s: l.s}
	l.s.conns[tc.id] = tc
	return tc, nil
}

type trackedConn struct {
	net.Conn
	id   int
	s    *SMTPServer
	once sync.Once
	// closeAfterReply closes the connection once the next reply is written
	// (the server writes each one-line reply in one Write).
	closeAfterReply atomic.Bool
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.closeAfterReply.CompareAndSwap(true, false) {
		_ = c.Close()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c.id)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// Deliver hands msg for rcpt to the SMTP server at addr with the null
// sender, as a relay delivers a bounce, and returns the server's error (an
// *smtp.SMTPError for a refusal).
func Deliver(t testing.TB, addr, rcpt string, msg []byte) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	if err := c.Hello("mx.relay.example"); err != nil {
		return err
	}
	if err := c.Mail("", nil); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
