package api

import (
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Timeouts are the HTTP server's time-outs. A client that sends its
// headers slowly, or connects and sends nothing, is cut after Header; an
// idle keep-alive connection after Idle. Read and Write bound a whole
// request and its answer on the routes without a token; under /api, once
// the token is checked, they become limits on silence instead: each read
// of the body and each write of the answer may take that long, so an
// import of a large file, `run --wait` and the event stream last as long
// as they make progress.
type Timeouts struct {
	Header, Read, Write, Idle time.Duration
}

// DefaultTimeouts are the time-outs of `renewals serve`: 10 s for the
// headers, 30 s of silence reading, 60 s writing, 60 s idle.
func DefaultTimeouts() Timeouts {
	return Timeouts{Header: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 60 * time.Second}
}

func (s *Server) timeouts() Timeouts {
	if s.Timeouts == (Timeouts{}) {
		return DefaultTimeouts()
	}
	return s.Timeouts
}

// PerClientConns is how many connections one client address may hold open
// at once; a connection beyond it is closed as soon as it is accepted.
const PerClientConns = 256

// ConnLimit is the bound on all open HTTP connections for a process that
// may open nofile files: it leaves a quarter (at most 1,024) for the NATS
// and store connections, the JetStream files and the outbox, so that a
// flood of HTTP clients cannot starve them.
func ConnLimit(nofile uint64) int {
	reserve := min(nofile/4, 1024)
	return int(max(nofile-reserve, 16))
}

// HTTPServer returns the server of Handler, with s's time-outs.
func (s *Server) HTTPServer() *http.Server {
	t := s.timeouts()
	// net/http's own complaints (a failed accept, a bad TLS handshake) go
	// to the service's log, not to a bare stderr line.
	errLog, _ := zap.NewStdLogAt(s.Log.Named("http"), zap.WarnLevel)
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: t.Header,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		ErrorLog:          errLog,
	}
}

// LimitListener bounds the connections ln hands out: at most perClient
// from one remote IP address (a connection beyond it is closed at once)
// and at most total in all (beyond it, Accept waits for one to close, and
// new connections wait in the kernel's backlog).
func LimitListener(ln net.Listener, total, perClient int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, total), perClient: perClient, open: map[string]int{}, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	slots     chan struct{}
	perClient int
	done      chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	open map[string]int // by remote IP
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		over := l.open[ip] >= l.perClient
		if !over {
			l.open[ip]++
		}
		l.mu.Unlock()
		if over {
			// Closing at once, rather than holding the connection, is what
			// keeps one client from taking every descriptor.
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	if l.open[ip] <= 1 {
		delete(l.open, ip)
	} else {
		l.open[ip]--
	}
	l.mu.Unlock()
	<-l.slots
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// countedConn gives its slot back once, on the first Close.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite lets net/http half-close a TCP connection before closing it,
// so that a client still sending a body it will not read receives the
// answer instead of a reset.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
