package mailer

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

// quirkRelay is a scripted SMTP responder for what go-smtp's server will
// not do: it offers PIPELINING, refuses RCPT TO for one address with 550,
// and still answers DATA with 354, against RFC 2920 section 3.1 (a server
// with no accepted recipient must refuse DATA). Every other command is
// accepted.
type quirkRelay struct {
	addr   string
	refuse string // the refused recipient, without brackets

	mu        sync.Mutex
	conns     int
	delivered [][]string // the recipients of each message whose data ended with "."
	// afterRefusal is what each connection sent after a 354 that followed
	// a refused recipient: its data lines, and whether it ended them.
	afterRefusal []quirkData
}

type quirkData struct {
	conn  int
	lines []string
	dot   bool
}

func startQuirkRelay(t *testing.T, refuse string) *quirkRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &quirkRelay{addr: l.Addr().String(), refuse: refuse}
	var wg sync.WaitGroup
	var open []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		r.mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		r.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			n := r.conns
			open = append(open, c)
			r.mu.Unlock()
			wg.Go(func() { r.serve(n, c) })
		}
	})
	return r
}

func (r *quirkRelay) serve(n int, c net.Conn) {
	defer c.Close()
	tp := textproto.NewConn(c)
	reply := func(s string) { _ = tp.PrintfLine("%s", s) }
	reply("220 quirk.example ESMTP")
	var rcpts []string
	refused := false
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		cmd := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			reply("250-quirk.example")
			reply("250-PIPELINING")
			reply("250 8BITMIME")
		case strings.HasPrefix(cmd, "HELO"), cmd == "NOOP":
			reply("250 ok")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			rcpts, refused = nil, false
			reply("250 2.1.0 ok")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			to := strings.Trim(strings.Fields(line[len("RCPT TO:"):])[0], "<>")
			if strings.EqualFold(to, r.refuse) {
				refused = true
				reply("550 5.1.1 <" + to + ">: Recipient address rejected: User unknown")
				continue
			}
			rcpts = append(rcpts, to)
			reply("250 2.1.5 ok")
		case cmd == "DATA":
			reply("354 End data with <CR><LF>.<CR><LF>") // whatever RCPT got
			lines, err := tp.ReadDotLines()
			if refused {
				r.mu.Lock()
				r.afterRefusal = append(r.afterRefusal, quirkData{conn: n, lines: lines, dot: err == nil})
				r.mu.Unlock()
			}
			if err != nil {
				return
			}
			r.mu.Lock()
			r.delivered = append(r.delivered, rcpts)
			r.mu.Unlock()
			reply("250 2.0.0 queued")
			rcpts, refused = nil, false
		case cmd == "RSET":
			rcpts, refused = nil, false
			reply("250 2.0.0 ok")
		case cmd == "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 command not recognised")
		}
	}
}

func (r *quirkRelay) state() (conns int, delivered [][]string, after []quirkData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, append([][]string(nil), r.delivered...), append([]quirkData(nil), r.afterRefusal...)
}

// checkRefusal checks err is the permanent 550 at RCPT TO, with the reply.
func checkRefusal(t *testing.T, what string, err error, addr string) {
	t.Helper()
	var de *DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("%s: %v, want a *DeliveryError", what, err)
	}
	if !errors.Is(err, ErrPermanent) || errors.Is(err, ErrAmbiguous) {
		t.Errorf("%s: %v, want permanent and not ambiguous", what, err)
	}
	if de.Stage != "RCPT TO" || de.Code != 550 || !strings.HasPrefix(de.Reply, "550 5.1.1 ") || !strings.Contains(de.Reply, "User unknown") {
		t.Errorf("%s: stage %q code %d reply %q, want the 550 to RCPT TO", what, de.Stage, de.Code, de.Reply)
	}
	if strings.Contains(err.Error(), addr) {
		t.Errorf("%s: error text holds the recipient's address: %v", what, err)
	}
}

// A relay that refuses the recipient and would then answer DATA with 354
// (RFC 2920 says it must not) has still refused the recipient: the notice
// fails permanently with the 550, the client never asks for DATA, so no
// message data goes out, and the transaction is reset for the next message
// on the same connection.
func TestRefusedRecipientThenDATAAccepted(t *testing.T) {
	refused, ok := quirkMessage(0), quirkMessage(1)
	relay := startQuirkRelay(t, refused.To)
	cfg, err := ParseURL("smtp://" + relay.addr + "?tls=none&workers=1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSMTP(cfg, "renewals@reseller.example", func() time.Time { return quirkNow })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	checkRefusal(t, "refused message", s.Send(t.Context(), refused), refused.To)
	_, delivered, after := relay.state()
	if len(delivered) != 0 {
		t.Errorf("the relay took %d messages, want none", len(delivered))
	}
	if len(after) != 0 {
		t.Errorf("after the refusal the client sent DATA and %+v, want nothing", after)
	}

	if err := s.Send(t.Context(), ok); err != nil {
		t.Fatalf("next message: %v, want delivered", err)
	}
	conns, delivered, _ := relay.state()
	if conns != 1 || len(delivered) != 1 || len(delivered[0]) != 1 || delivered[0][0] != ok.To {
		t.Errorf("%d connections, delivered %q; want the next message alone on the same connection", conns, delivered)
	}
}

var quirkNow = time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)

func quirkMessage(i int) Message {
	id := fmt.Sprintf("q%d", i)
	return Message{
		Key:     subscription.NoticeKey{SubscriptionID: id, EndDate: subscription.MustDate("2027-03-31"), Milestone: 90},
		To:      fmt.Sprintf("cm%d@customer.example", i),
		ToName:  "Carla Manager",
		Subject: "Your subscription " + id + " ends on 31 March 2027",
		Text:    "Plain text for " + id + ".\n",
		HTML:    "<p>HTML for " + id + "</p>",
	}
}
