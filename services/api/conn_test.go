package api

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// accepted starts accepting on ln and returns the channel of what Accept
// hands out.
func accepted(t *testing.T, ln net.Listener) <-chan net.Conn {
	t.Helper()
	out := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(out)
				return
			}
			out <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return out
}

func dial(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func receive(t *testing.T, ch <-chan net.Conn, what string) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection accepted: %s", what)
		return nil
	}
}

// closedByServer reports whether the server closed c: a read returns EOF
// or a reset before the deadline instead of timing out.
func closedByServer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestLimitListenerPerClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := accepted(t, LimitListener(ln, 100, 2))
	addr := ln.Addr().String()

	a1, a2 := dial(t, "127.0.3.1", addr), dial(t, "127.0.3.1", addr)
	s1 := receive(t, ch, "first of client A")
	receive(t, ch, "second of client A")
	a3 := dial(t, "127.0.3.1", addr)
	if !closedByServer(a3, 2*time.Second) {
		t.Error("a third connection of a client bound to two was not closed at once")
	}
	// Another client is not affected.
	dial(t, "127.0.3.2", addr)
	receive(t, ch, "client B, while A is at its bound")
	for _, c := range []net.Conn{a1, a2} {
		if closedByServer(c, 100*time.Millisecond) {
			t.Error("a connection within the bound was closed")
		}
	}
	// A closed connection frees its slot.
	s1.Close()
	dial(t, "127.0.3.1", addr)
	receive(t, ch, "client A after one of its connections closed")
}

func TestLimitListenerTotal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := accepted(t, LimitListener(ln, 2, 10))
	addr := ln.Addr().String()

	dial(t, "127.0.4.1", addr)
	dial(t, "127.0.4.2", addr)
	first := receive(t, ch, "first")
	receive(t, ch, "second")
	dial(t, "127.0.4.3", addr)
	select {
	case <-ch:
		t.Fatal("a third connection was handed out over a total bound of two")
	case <-time.After(300 * time.Millisecond):
	}
	first.Close()
	receive(t, ch, "the third, once the first closed")
}

func TestConnLimitLeavesRoomForTheRest(t *testing.T) {
	for _, c := range []struct {
		nofile uint64
		want   int
	}{{1024, 768}, {20_000, 18_976}, {1 << 20, 1<<20 - 1024}, {32, 24}} {
		if got := ConnLimit(c.nofile); got != c.want {
			t.Errorf("ConnLimit(%d) = %d, want %d", c.nofile, got, c.want)
		}
	}
}
