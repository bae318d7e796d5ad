package testenv_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"renewals/pkg/testenv"
)

func send(t *testing.T, c *smtp.Client, to ...string) error {
	t.Helper()
	return c.SendMail("from@example.com", to, strings.NewReader("Subject: hi\r\n\r\nbody\r\n"))
}

func dial(t *testing.T, s *testenv.SMTPServer) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestSMTPServerRecordsAndCountsConnections(t *testing.T) {
	s := testenv.SMTP(t)
	c := dial(t, s)
	for range 3 {
		if err := send(t, c, "a@example.com", "b@example.com"); err != nil {
			t.Fatal(err)
		}
	}
	got := s.WaitFor(3, 5*time.Second)
	if len(got) != 3 || got[0].From != "from@example.com" || strings.Join(got[0].To, ",") != "a@example.com,b@example.com" {
		t.Fatalf("messages = %+v", got)
	}
	msg, err := got[0].Parse()
	if err != nil || msg.Header.Get("Subject") != "hi" {
		t.Errorf("parse: %v, subject %q", err, msg.Header.Get("Subject"))
	}
	if s.Connections() != 1 || s.OpenConnections() != 1 || got[2].Conn != 1 {
		t.Errorf("connections %d open %d conn %d, want 1 1 1", s.Connections(), s.OpenConnections(), got[2].Conn)
	}
}

func TestSMTPServerFaults(t *testing.T) {
	s := testenv.SMTP(t)
	s.Inject(testenv.Fault{Rcpt: "bad@example.com", Stage: testenv.StageRcpt, Code: 550})
	s.Inject(testenv.Fault{Stage: testenv.StageData, Code: 451, Times: 2})
	c := dial(t, s)
	if err := send(t, c, "bad@example.com"); code(err) != 550 {
		t.Errorf("rcpt fault: %v, want 550", err)
	}
	for i := range 2 {
		if err := send(t, c, "ok@example.com"); code(err) != 451 {
			t.Errorf("data fault attempt %d: %v, want 451", i+1, err)
		}
	}
	if err := send(t, c, "ok@example.com"); err != nil {
		t.Errorf("after the fault's 2 attempts: %v", err)
	}
	if err := send(t, c, "bad@example.com"); code(err) != 550 {
		t.Errorf("Times 0 strikes every time: %v", err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("recorded %d messages, want 1", n)
	}
}

func TestSMTPServerDropsMidData(t *testing.T) {
	s := testenv.SMTP(t)
	s.Inject(testenv.Fault{Action: testenv.DropBeforeReply, Times: 1})
	s.Inject(testenv.Fault{Action: testenv.DropBeforeReply, Deliver: true, Times: 1})
	if err := send(t, dial(t, s), "a@example.com"); err == nil || code(err) != 0 {
		t.Errorf("drop: %v, want a connection error", err)
	}
	if err := send(t, dial(t, s), "a@example.com"); err == nil {
		t.Error("drop with delivery: no error")
	}
	if got := s.WaitFor(1, 5*time.Second); len(got) != 1 {
		t.Errorf("recorded %d, want only the delivered one", len(got))
	}
	if s.Connections() != 2 {
		t.Errorf("connections = %d", s.Connections())
	}
}

func TestSMTPServer421ClosesTheConnection(t *testing.T) {
	s := testenv.SMTP(t)
	s.Inject(testenv.Fault{Stage: testenv.StageMail, Code: 421, Times: 1})
	c := dial(t, s)
	if err := send(t, c, "a@example.com"); code(err) != 421 {
		t.Errorf("421 fault: %v", err)
	}
	if err := c.Noop(); err == nil {
		t.Error("connection still open after 421")
	}
}
