package mailer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// These tests give one worker a queue that holds every job before the
// worker starts, so that it finds the next message waiting each time it is
// about to write a message's data: it sends that data with the next
// message's envelope. Each message's outcome must be what it would be alone.

var pipeNow = time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)

func pipeMessage(i int) Message {
	id := fmt.Sprintf("p%d", i)
	return Message{
		Key:     subscription.NoticeKey{SubscriptionID: id, EndDate: subscription.MustDate("2027-03-31"), Milestone: 90},
		To:      fmt.Sprintf("cm%d@customer.example", i),
		ToName:  "Carla Manager",
		Subject: "Your subscription " + id + " ends on 31 March 2027",
		Text:    "Plain text for " + id + ".\n.\nA line that starts with a dot.\n",
		HTML:    "<p>HTML for " + id + "</p>",
	}
}

// queued starts a one-worker sender on srv whose queue holds msgs, in
// order, with ctxs[i] for message i when given, and returns each message's
// result channel and the sender.
func queued(t *testing.T, srv *testenv.SMTPServer, msgs []Message, ctxs map[int]context.Context) ([]chan error, *SMTPSender) {
	t.Helper()
	return queuedAt(t, srv.URL(), msgs, ctxs)
}

// queuedAt is queued for the server at smtpURL (a RENEWALS_SMTP_URL with a
// query).
func queuedAt(t *testing.T, smtpURL string, msgs []Message, ctxs map[int]context.Context) ([]chan error, *SMTPSender) {
	t.Helper()
	cfg, err := ParseURL(smtpURL + "&workers=1")
	if err != nil {
		t.Fatal(err)
	}
	jobs := make(chan job, len(msgs))
	done := make([]chan error, len(msgs))
	for i, m := range msgs {
		ctx := t.Context()
		if c, ok := ctxs[i]; ok {
			ctx = c
		}
		done[i] = make(chan error, 1)
		jobs <- job{ctx: ctx, msg: m, done: done[i]}
	}
	s, err := newSMTP(cfg, "renewals@reseller.example", func() time.Time { return pipeNow }, jobs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return done, s
}

// outcome waits for a result.
func outcome(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("no result within 20s")
		return nil
	}
}

// delivered checks which messages the server accepted, by recipient, and on
// which connection each came.
func delivered(t *testing.T, srv *testenv.SMTPServer, want map[string]int) {
	t.Helper()
	got := srv.WaitFor(len(want), 10*time.Second)
	if len(got) != len(want) {
		t.Errorf("server accepted %d messages, want %d", len(got), len(want))
	}
	for _, m := range got {
		if len(m.To) != 1 {
			t.Errorf("message with recipients %q", m.To)
			continue
		}
		conn, ok := want[m.To[0]]
		if !ok {
			t.Errorf("message to %s accepted, want none", m.To[0])
		} else if m.Conn != conn {
			t.Errorf("message to %s came on connection %d, want %d", m.To[0], m.Conn, conn)
		}
	}
}

func TestPipelinedMessagesAllDelivered(t *testing.T) {
	srv := testenv.SMTP(t)
	var msgs []Message
	want := map[string]int{}
	for i := range 5 {
		msgs = append(msgs, pipeMessage(i))
		want[msgs[i].To] = 1
	}
	done, s := queued(t, srv, msgs, nil)
	for i := range msgs {
		if err := outcome(t, done[i]); err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	delivered(t, srv, want)
	if got := s.pipelined.Load(); got != 4 {
		t.Errorf("%d messages went out with the previous message's data, want 4", got)
	}
	// The server got exactly what Compose writes.
	for _, m := range srv.Messages() {
		for _, msg := range msgs {
			if m.To[0] == msg.To {
				if want, _ := Compose("renewals@reseller.example", msg, pipeNow); string(m.Data) != string(want) {
					t.Errorf("message to %s differs from Compose", msg.To)
				}
			}
		}
	}
}

func TestPipelinedNextRecipientRefused(t *testing.T) {
	srv := testenv.SMTP(t)
	msgs := []Message{pipeMessage(0), pipeMessage(1), pipeMessage(2)}
	srv.Inject(testenv.Fault{Rcpt: msgs[1].To, Stage: testenv.StageRcpt, Code: 550, Message: "5.1.1 <" + msgs[1].To + ">: mailbox unavailable"})
	done, s := queued(t, srv, msgs, nil)
	if err := outcome(t, done[0]); err != nil {
		t.Errorf("message 0, sent with the refused envelope: %v, want delivered", err)
	}
	err := outcome(t, done[1])
	var de *DeliveryError
	if !errors.As(err, &de) || !errors.Is(err, ErrPermanent) || errors.Is(err, ErrAmbiguous) || de.Stage != "RCPT TO" || de.Code != 550 {
		t.Errorf("message 1: %v, want a permanent 550 at RCPT TO", err)
	} else if strings.Contains(err.Error(), msgs[1].To) {
		t.Errorf("message 1: error text holds the recipient's address: %v", err)
	}
	if err := outcome(t, done[2]); err != nil {
		t.Errorf("message 2: %v, want delivered", err)
	}
	// The refusal was reset, not a reason to reconnect.
	delivered(t, srv, map[string]int{msgs[0].To: 1, msgs[2].To: 1})
	if got := s.pipelined.Load(); got < 1 {
		t.Errorf("no message went out with the previous message's data")
	}
}

func TestPipelinedDropAfterData(t *testing.T) {
	srv := testenv.SMTP(t)
	msgs := []Message{pipeMessage(0), pipeMessage(1)}
	// The server reads message 0's data and hangs up without a reply,
	// message 1's envelope unread behind it.
	srv.Inject(testenv.Fault{Rcpt: msgs[0].To, Action: testenv.DropBeforeReply, Times: 1})
	done, s := queued(t, srv, msgs, nil)
	err := outcome(t, done[0])
	var de *DeliveryError
	if !errors.As(err, &de) || !errors.Is(err, ErrAmbiguous) || errors.Is(err, ErrPermanent) || de.Stage != "end of DATA" {
		t.Errorf("message 0: %v, want ambiguous at end of DATA", err)
	}
	if err := outcome(t, done[1]); err != nil {
		t.Errorf("message 1, whose data never went out: %v, want delivered on a new connection", err)
	}
	delivered(t, srv, map[string]int{msgs[1].To: 2})
	if got := s.pipelined.Load(); got != 1 {
		t.Errorf("%d messages went out with the previous message's data, want 1", got)
	}
}

func TestPipelinedDropAfterPipelinedData(t *testing.T) {
	srv := testenv.SMTP(t)
	msgs := []Message{pipeMessage(0), pipeMessage(1), pipeMessage(2)}
	// Message 1 went out with message 0's data; the server hangs up after
	// reading message 1's data, which went with message 2's envelope.
	srv.Inject(testenv.Fault{Rcpt: msgs[1].To, Action: testenv.DropBeforeReply, Deliver: true, Times: 1})
	done, _ := queued(t, srv, msgs, nil)
	if err := outcome(t, done[0]); err != nil {
		t.Errorf("message 0: %v, want delivered", err)
	}
	if err := outcome(t, done[1]); !errors.Is(err, ErrAmbiguous) || errors.Is(err, ErrPermanent) {
		t.Errorf("message 1: %v, want ambiguous", err)
	}
	if err := outcome(t, done[2]); err != nil {
		t.Errorf("message 2: %v, want delivered on a new connection", err)
	}
	delivered(t, srv, map[string]int{msgs[0].To: 1, msgs[1].To: 1, msgs[2].To: 2})
}

func TestPipelinedDropAfterReply(t *testing.T) {
	srv := testenv.SMTP(t)
	msgs := []Message{pipeMessage(0), pipeMessage(1)}
	// Message 0 is accepted, then the server hangs up before reading
	// message 1's envelope.
	srv.Inject(testenv.Fault{Rcpt: msgs[0].To, Action: testenv.DropAfterReply, Times: 1})
	done, _ := queued(t, srv, msgs, nil)
	if err := outcome(t, done[0]); err != nil {
		t.Errorf("message 0: %v, want delivered", err)
	}
	if err := outcome(t, done[1]); err != nil {
		t.Errorf("message 1: %v, want delivered on a new connection", err)
	}
	delivered(t, srv, map[string]int{msgs[0].To: 1, msgs[1].To: 2})
}

func TestPipelinedDataRefusals(t *testing.T) {
	for _, tc := range []struct {
		code      int
		permanent bool
		conn      int // message 1's connection
	}{
		{554, true, 1},  // the session goes on
		{451, false, 1}, // likewise
		{421, false, 2}, // the server hangs up: message 1 goes again
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			srv := testenv.SMTP(t)
			msgs := []Message{pipeMessage(0), pipeMessage(1)}
			srv.Inject(testenv.Fault{Rcpt: msgs[0].To, Stage: testenv.StageData, Code: tc.code, Times: 1})
			done, _ := queued(t, srv, msgs, nil)
			err := outcome(t, done[0])
			var de *DeliveryError
			if !errors.As(err, &de) || de.Code != tc.code || de.Stage != "end of DATA" ||
				errors.Is(err, ErrPermanent) != tc.permanent || errors.Is(err, ErrAmbiguous) {
				t.Errorf("message 0: %v, want %d at end of DATA (permanent %v, not ambiguous)", err, tc.code, tc.permanent)
			}
			if err := outcome(t, done[1]); err != nil {
				t.Errorf("message 1: %v, want delivered", err)
			}
			delivered(t, srv, map[string]int{msgs[1].To: tc.conn})
		})
	}
}

func TestPipelinedNextRecipient421(t *testing.T) {
	srv := testenv.SMTP(t)
	msgs := []Message{pipeMessage(0), pipeMessage(1), pipeMessage(2)}
	srv.Inject(testenv.Fault{Rcpt: msgs[1].To, Stage: testenv.StageRcpt, Code: 421, Times: 1})
	done, _ := queued(t, srv, msgs, nil)
	if err := outcome(t, done[0]); err != nil {
		t.Errorf("message 0: %v, want delivered", err)
	}
	err := outcome(t, done[1])
	var de *DeliveryError
	if !errors.As(err, &de) || de.Code != 421 || de.Stage != "RCPT TO" || errors.Is(err, ErrPermanent) || errors.Is(err, ErrAmbiguous) {
		t.Errorf("message 1: %v, want a transient 421 at RCPT TO", err)
	}
	if err := outcome(t, done[2]); err != nil {
		t.Errorf("message 2: %v, want delivered on a new connection", err)
	}
	delivered(t, srv, map[string]int{msgs[0].To: 1, msgs[2].To: 2})
}

func TestPipelinedNextContextEnded(t *testing.T) {
	srv := testenv.SMTP(t)
	msgs := []Message{pipeMessage(0), pipeMessage(1), pipeMessage(2)}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done, _ := queued(t, srv, msgs, map[int]context.Context{1: ctx})
	if err := outcome(t, done[0]); err != nil {
		t.Errorf("message 0: %v, want delivered", err)
	}
	if err := outcome(t, done[1]); !errors.Is(err, context.Canceled) {
		t.Errorf("message 1: %v, want context.Canceled", err)
	}
	if err := outcome(t, done[2]); err != nil {
		t.Errorf("message 2: %v, want delivered", err)
	}
	delivered(t, srv, map[string]int{msgs[0].To: 1, msgs[2].To: 1})
}

func TestPipelinedNextCannotBeComposed(t *testing.T) {
	srv := testenv.SMTP(t)
	msgs := []Message{pipeMessage(0), pipeMessage(1), pipeMessage(2)}
	msgs[1].To = "not an address"
	done, _ := queued(t, srv, msgs, nil)
	if err := outcome(t, done[0]); err != nil {
		t.Errorf("message 0: %v, want delivered", err)
	}
	if err := outcome(t, done[1]); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("message 1: %v, want ErrInvalidAddress", err)
	}
	if err := outcome(t, done[2]); err != nil {
		t.Errorf("message 2: %v, want delivered", err)
	}
	delivered(t, srv, map[string]int{msgs[0].To: 1, msgs[2].To: 1})
}

// Postfix's smtp-sink takes a message's data followed by the next message's
// envelope in one group; without PIPELINING on offer, the worker sends one
// command at a time and never pipelines messages.
func TestPipelinedIntoSMTPSink(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			var opts []string
			if !pipelining {
				opts = append(opts, "-p") // do not announce PIPELINING
			}
			addr, _ := testenv.SMTPSink(t, opts...)
			msgs := make([]Message, 6)
			for i := range msgs {
				msgs[i] = pipeMessage(i)
			}
			cfg, err := ParseURL("smtp://" + addr + "?tls=none&workers=1")
			if err != nil {
				t.Fatal(err)
			}
			jobs := make(chan job, len(msgs))
			done := make([]chan error, len(msgs))
			for i, m := range msgs {
				done[i] = make(chan error, 1)
				jobs <- job{ctx: t.Context(), msg: m, done: done[i]}
			}
			s, err := newSMTP(cfg, "renewals@reseller.example", nil, jobs)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := range msgs {
				if err := outcome(t, done[i]); err != nil {
					t.Errorf("message %d: %v", i, err)
				}
			}
			want := int64(0)
			if pipelining {
				want = int64(len(msgs) - 1)
			}
			if got := s.pipelined.Load(); got != want {
				t.Errorf("%d messages went out with the previous message's data, want %d", got, want)
			}
		})
	}
}
