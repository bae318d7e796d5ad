package mailer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"renewals/pkg/mailer"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

const from = "renewals@reseller.example"

var fixedNow = time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)

func clock() time.Time { return fixedNow }

func sample(id string) mailer.Message {
	return mailer.Message{
		Key:     subscription.NoticeKey{SubscriptionID: id, EndDate: subscription.MustDate("2027-03-31"), Milestone: 90},
		To:      "cm@customer.example",
		ToName:  "Carla Manager",
		Subject: "Your subscription " + id + " ends on 31 March 2027",
		Text:    "Plain text body for " + id + ".\n.\nA line that starts with a dot.\n",
		HTML:    "<p>HTML body for " + id + "</p>",
	}
}

func newSMTP(t testing.TB, srv *testenv.SMTPServer, params string) *mailer.SMTPSender {
	t.Helper()
	cfg, err := mailer.ParseURL(srv.URL() + params)
	if err != nil {
		t.Fatal(err)
	}
	s, err := mailer.NewSMTP(cfg, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// parts returns the decoded bodies of a multipart/alternative message by content type.
func parts(t *testing.T, msg *mail.Message) map[string]string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	out := map[string]string{}
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		b, _ := io.ReadAll(p) // NextPart decodes quoted-printable
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		out[ct] = string(b)
	}
	return out
}

func TestSMTPDeliversOneMessageToTheContractManager(t *testing.T) {
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, "")
	m := sample("110001234567")
	if err := s.Send(t.Context(), m); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := srv.WaitFor(1, 10*time.Second)
	if len(got) != 1 {
		t.Fatalf("server got %d messages, want 1", len(got))
	}
	if want := []string{m.To}; !equal(got[0].To, want) {
		t.Errorf("RCPT TO = %q, want exactly %q", got[0].To, want)
	}
	if got[0].From != from {
		t.Errorf("MAIL FROM = %q, want %q", got[0].From, from)
	}
	msg, err := got[0].Parse()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msg.Header.Get(mailer.HeaderNotice), "110001234567:2027-03-31:90"; got != want {
		t.Errorf("%s = %q, want %q", mailer.HeaderNotice, got, want)
	}
	if got, want := msg.Header.Get("Message-ID"), "<"+mailer.MessageID(m.Key, from)+">"; got != want {
		t.Errorf("Message-ID = %q, want %q", got, want)
	}
	if got, want := mailer.MessageID(m.Key, from), "renewal.110001234567.2027-03-31.90@reseller.example"; got != want {
		t.Errorf("MessageID = %q, want %q", got, want)
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != m.To || to[0].Name != m.ToName {
		t.Errorf("To = %v (%v), want exactly %s <%s>", to, err, m.ToName, m.To)
	}
	for _, h := range []string{"Cc", "Bcc"} {
		if v, ok := msg.Header[h]; ok {
			t.Errorf("message has a %s header: %q", h, v)
		}
	}
	if got := msg.Header.Get("Subject"); got != m.Subject {
		t.Errorf("Subject = %q, want %q", got, m.Subject)
	}
	if got := msg.Header.Get("Auto-Submitted"); got != "auto-generated" {
		t.Errorf("Auto-Submitted = %q, want auto-generated (RFC 3834)", got)
	}
	if got, err := msg.Header.Date(); err != nil || !got.Equal(fixedNow) {
		t.Errorf("Date = %v (%v), want %v", got, err, fixedNow)
	}
	p := parts(t, msg)
	if got := strings.ReplaceAll(p["text/plain"], "\r\n", "\n"); got != m.Text {
		t.Errorf("text part = %q, want %q", got, m.Text)
	}
	if got := p["text/html"]; got != m.HTML {
		t.Errorf("html part = %q, want %q", got, m.HTML)
	}
	// The server received exactly the bytes the outbox would store.
	want, err := mailer.Compose(from, m, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].Data, want) {
		t.Errorf("SMTP data differs from Compose:\n%s\n---\n%s", got[0].Data, want)
	}
}

func TestHeaderInjectionIsImpossible(t *testing.T) {
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, "")
	m := sample("110001234567")
	m.ToName = "Eve\r\nBcc: evil@attacker.example\r\nX-Evil: name"
	m.Subject = "Renewal\r\nBcc: evil@attacker.example\nX-Evil: subject\r\n\r\nbody"
	if err := s.Send(t.Context(), m); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := srv.WaitFor(1, 10*time.Second)
	if !equal(got[0].To, []string{m.To}) {
		t.Errorf("RCPT TO = %q, want only %q", got[0].To, m.To)
	}
	checkNoInjectedHeaders(t, got[0].Data)

	// The address itself cannot carry a header or a second recipient.
	for _, to := range []string{"cm@customer.example\r\nBcc: evil@attacker.example", "a@x.example, evil@attacker.example",
		"Carla <cm@customer.example>", "not an address", ""} {
		bad := sample("110001234567")
		bad.To = to
		err := s.Send(t.Context(), bad)
		if !errors.Is(err, mailer.ErrInvalidAddress) || !errors.Is(err, mailer.ErrPermanent) {
			t.Errorf("Send to %q: err = %v, want ErrInvalidAddress (permanent)", to, err)
		}
	}
	bad := sample("1100\r\nBcc: evil@attacker.example")
	if err := s.Send(t.Context(), bad); !errors.Is(err, mailer.ErrPermanent) {
		t.Errorf("Send with CR/LF in the key: err = %v, want ErrPermanent", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("server got %d messages, want 1", n)
	}
}

// Compose writes each header on its own line whatever the name and subject
// hold: CR, LF, NEL, line and paragraph separators, form feeds.
func TestComposeKeepsHeadersOnTheirLines(t *testing.T) {
	for _, brk := range []string{"\r\n", "\n", "\r", "\u0085", "\u2028", "\u2029", "\v", "\f", "\r\n\t"} {
		m := sample("110001234567")
		m.ToName = "Eve" + brk + "Bcc: evil@attacker.example" + brk + "X-Evil: name"
		m.Subject = "Renewal" + brk + "Bcc: evil@attacker.example" + brk + "X-Evil: subject" + brk + brk + "body"
		data, err := mailer.Compose(from, m, fixedNow)
		if err != nil {
			t.Fatal(err)
		}
		checkNoInjectedHeaders(t, data)
		msg, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		dec := new(mime.WordDecoder)
		subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
		if err != nil || strings.ContainsAny(subject, "\r\n") || !strings.HasPrefix(subject, "Renewal") {
			t.Errorf("break %q: Subject = %q (%v), want one line", brk, subject, err)
		}
	}
}

func checkNoInjectedHeaders(t *testing.T, data []byte) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, data)
	}
	for _, h := range []string{"Bcc", "Cc", "X-Evil"} {
		if v, ok := msg.Header[h]; ok {
			t.Errorf("injected header %s: %q\n%s", h, v, data)
		}
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != "cm@customer.example" {
		t.Errorf("To = %v (%v), want the contract manager only", to, err)
	}
}

func TestSMTPErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fault         testenv.Fault
		permanent     bool
		ambiguous     bool
		code          int
		stage         string
		replyContains string
	}{
		{"421 at RCPT", testenv.Fault{Stage: testenv.StageRcpt, Code: 421}, false, false, 421, "RCPT TO", "421"},
		{"451 at MAIL", testenv.Fault{Stage: testenv.StageMail, Code: 451}, false, false, 451, "MAIL FROM", "451"},
		{"451 at end of DATA", testenv.Fault{Stage: testenv.StageData, Code: 451}, false, false, 451, "end of DATA", "451"},
		{"550 at RCPT", testenv.Fault{Stage: testenv.StageRcpt, Code: 550, Message: "5.1.1 <cm@customer.example>: mailbox unavailable"},
			true, false, 550, "RCPT TO", "550 5.0.0 5.1.1 <recipient>: mailbox unavailable"},
		{"554 at end of DATA", testenv.Fault{Stage: testenv.StageData, Code: 554}, true, false, 554, "end of DATA", "554"},
		{"dropped mid-DATA", testenv.Fault{Action: testenv.DropBeforeReply}, false, true, 0, "end of DATA", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.SMTP(t)
			s := newSMTP(t, srv, "&workers=1")
			tc.fault.Times = 1
			srv.Inject(tc.fault)
			m := sample("110001234567")
			err := s.Send(t.Context(), m)
			var de *mailer.DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *DeliveryError", err)
			}
			if got := errors.Is(err, mailer.ErrPermanent); got != tc.permanent {
				t.Errorf("errors.Is(err, ErrPermanent) = %v, want %v (err: %v)", got, tc.permanent, err)
			}
			if got := errors.Is(err, mailer.ErrAmbiguous); got != tc.ambiguous {
				t.Errorf("errors.Is(err, ErrAmbiguous) = %v, want %v (err: %v)", got, tc.ambiguous, err)
			}
			if de.Code != tc.code || de.Stage != tc.stage || !strings.Contains(de.Reply, tc.replyContains) {
				t.Errorf("code %d stage %q reply %q, want %d %q containing %q", de.Code, de.Stage, de.Reply, tc.code, tc.stage, tc.replyContains)
			}
			if strings.Contains(err.Error(), m.To) {
				t.Errorf("error text holds the recipient's address: %v", err)
			}
			if len(srv.Messages()) != 0 {
				t.Errorf("server recorded the refused message")
			}
			// The fault struck once: the same sender delivers the retry.
			if err := s.Send(t.Context(), m); err != nil {
				t.Fatalf("retry: %v", err)
			}
			srv.WaitFor(1, 10*time.Second)
		})
	}
}

// After a refusal the session goes on, reset, on the same connection; a
// server that answers 421 closes it, so the next message goes on a new one.
func TestConnectionAfterARefusal(t *testing.T) {
	for _, tc := range []struct {
		fault testenv.Fault
		conn  int // the next message's connection
	}{
		{testenv.Fault{Stage: testenv.StageRcpt, Code: 550}, 1},
		{testenv.Fault{Stage: testenv.StageData, Code: 554}, 1},
		{testenv.Fault{Stage: testenv.StageData, Code: 451}, 1},
		{testenv.Fault{Stage: testenv.StageData, Code: 421}, 2},
	} {
		t.Run(fmt.Sprint(tc.fault.Code), func(t *testing.T) {
			srv := testenv.SMTP(t)
			s := newSMTP(t, srv, "&workers=1")
			tc.fault.Times = 1
			srv.Inject(tc.fault)
			if err := s.Send(t.Context(), sample("1")); err == nil {
				t.Fatal("refused message: no error")
			}
			if err := s.Send(t.Context(), sample("2")); err != nil {
				t.Fatalf("next message: %v", err)
			}
			if got := srv.WaitFor(1, 10*time.Second); len(got) != 1 || got[0].Conn != tc.conn {
				t.Errorf("next message on connection %d, want %d", got[0].Conn, tc.conn)
			}
		})
	}
}

// The connection is lost right after the server accepted the data (where
// an RSET after the message would fail): the message counts as sent, is not
// sent again, and the next goes on a new connection.
func TestRSETFailureAfterAcceptedDataIsASuccess(t *testing.T) {
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, "&workers=1")
	srv.Inject(testenv.Fault{Action: testenv.DropAfterReply, Times: 1})
	if err := s.Send(t.Context(), sample("1")); err != nil {
		t.Fatalf("send: %v, want nil: the server accepted the data", err)
	}
	if err := s.Send(t.Context(), sample("2")); err != nil {
		t.Fatalf("send on a new connection: %v", err)
	}
	got := srv.WaitFor(2, 10*time.Second)
	if len(got) != 2 || got[0].Conn == got[1].Conn {
		t.Errorf("got %d messages on connections %d and %d, want 2 on two connections", len(got), got[0].Conn, got[len(got)-1].Conn)
	}
}

func TestStaleConnectionIsReopened(t *testing.T) {
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, "&workers=1")
	if err := s.Send(t.Context(), sample("1")); err != nil {
		t.Fatal(err)
	}
	srv.DropConnections()
	if err := s.Send(t.Context(), sample("2")); err != nil {
		t.Fatalf("send after the server dropped the connection: %v", err)
	}
	srv.WaitFor(2, 10*time.Second)
	if got := srv.Connections(); got != 2 {
		t.Errorf("connections = %d, want 2", got)
	}
}

// Begin runs before each SMTP transaction, again before the one on a new
// connection that replaces a stale one, and before the outbox file is
// written; when it fails nothing goes out.
func TestBeginRunsBeforeEachTransaction(t *testing.T) {
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, "&workers=1")
	calls := 0
	m := sample("1")
	m.Begin = func() error { calls++; return nil }
	if err := s.Send(t.Context(), m); err != nil || calls != 1 {
		t.Fatalf("send: %v, Begin called %d times; want nil, 1", err, calls)
	}
	srv.DropConnections()
	calls = 0
	if err := s.Send(t.Context(), m); err != nil || calls != 2 {
		t.Errorf("send on a stale connection: %v, Begin called %d times; want nil, 2 (one per transaction)", err, calls)
	}
	refused := errors.New("claim lost")
	m = sample("2")
	m.Begin = func() error { return refused }
	if err := s.Send(t.Context(), m); !errors.Is(err, mailer.ErrNotStarted) || !errors.Is(err, refused) {
		t.Errorf("send with a failing Begin: %v, want ErrNotStarted and Begin's error", err)
	}
	if got := len(srv.Messages()); got != 2 {
		t.Errorf("server got %d messages, want 2", got)
	}

	dir := t.TempDir()
	o, err := mailer.NewOutbox(dir, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Send(t.Context(), m); !errors.Is(err, mailer.ErrNotStarted) {
		t.Errorf("outbox send with a failing Begin: %v, want ErrNotStarted", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("outbox holds %d files, want none", len(entries))
	}
}

func TestPoolReusesConnections(t *testing.T) {
	const workers, senders, perSender = 3, 12, 25
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, fmt.Sprintf("&workers=%d", workers))
	var wg sync.WaitGroup
	errs := make(chan error, senders*perSender)
	for g := range senders {
		wg.Go(func() {
			for i := range perSender {
				errs <- s.Send(t.Context(), sample(fmt.Sprintf("s%d-%d", g, i)))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := srv.WaitFor(senders*perSender, 10*time.Second)
	if len(got) != senders*perSender {
		t.Fatalf("server got %d messages, want %d", len(got), senders*perSender)
	}
	if n := srv.Connections(); n > workers {
		t.Errorf("server saw %d connections for %d messages, want at most %d", n, len(got), workers)
	}
	for _, m := range got {
		if len(m.To) != 1 {
			t.Errorf("message with %d recipients", len(m.To))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), sample("late")); !errors.Is(err, mailer.ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
}

// A relay without STARTTLS, where the URL requires it, fails the notice at
// once, permanently, with what to change: a retry meets the same EHLO.
func TestStartTLSRequiredButNotOfferedIsPermanent(t *testing.T) {
	srv := testenv.SMTP(t) // offers no STARTTLS
	cfg, err := mailer.ParseURL("smtp://" + srv.Addr + "?tls=starttls")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS != mailer.TLSStartTLS {
		t.Fatalf("tls = %q, want starttls", cfg.TLS)
	}
	s, err := mailer.NewSMTP(cfg, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 2 { // a second send is refused the same way, on a new connection
		err = s.Send(t.Context(), sample(fmt.Sprint(i+1)))
		var de *mailer.DeliveryError
		if !errors.As(err, &de) || de.Stage != "connect" || !errors.Is(err, mailer.ErrPermanent) {
			t.Fatalf("send %d: err = %v, want a permanent connect error", i+1, err)
		}
		for _, want := range []string{"does not offer STARTTLS", "RENEWALS_SMTP_URL requires (tls=starttls)", "tls=opportunistic", "(permanent: do not retry)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("send %d: err = %q, want it to say %q", i+1, err, want)
			}
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("the relay received %d messages", n)
	}
}

// Without TLS the same relay takes the message; and failing to reach a
// relay at all stays transient.
func TestConnectFailuresAreTransient(t *testing.T) {
	srv := testenv.SMTP(t)
	cfg, err := mailer.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLS = mailer.TLSOpportunistic
	s, err := mailer.NewSMTP(cfg, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(t.Context(), sample("1")); err != nil {
		t.Errorf("tls=opportunistic to a relay without STARTTLS: %v", err)
	}

	cfg.Port = testenv.FreePort(t)
	cfg.TLS = mailer.TLSStartTLS
	s2, err := mailer.NewSMTP(cfg, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Send(t.Context(), sample("1")); err == nil || errors.Is(err, mailer.ErrPermanent) {
		t.Errorf("send to a closed port: %v, want a transient error", err)
	}
}

func TestSendHonoursContext(t *testing.T) {
	srv := testenv.SMTP(t)
	s := newSMTP(t, srv, "&workers=1")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Send(ctx, sample("1")); !errors.Is(err, context.Canceled) {
		t.Errorf("send with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestOutboxWritesAtomicParseableFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o, err := mailer.NewOutbox(dir, from, clock)
	if err != nil {
		t.Fatal(err)
	}
	m := sample("110001234567")
	if err := o.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	m.Subject = "Second version"
	if err := o.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "110001234567_2027-03-31_90.eml" {
		t.Fatalf("outbox holds %v, want one file 110001234567_2027-03-31_90.eml (no temporary files)", entries)
	}
	data, err := os.ReadFile(filepath.Join(dir, mailer.FileName(m.Key)))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := mailer.Compose(from, m, fixedNow)
	if !bytes.Equal(data, want) {
		t.Errorf("file differs from the composed message")
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse .eml: %v", err)
	}
	if got := msg.Header.Get("Subject"); got != "Second version" {
		t.Errorf("Subject = %q: the rewrite did not replace the file", got)
	}
	if got := msg.Header.Get(mailer.HeaderNotice); got != m.Key.String() {
		t.Errorf("%s = %q", mailer.HeaderNotice, got)
	}
	p := parts(t, msg)
	if p["text/plain"] == "" || p["text/html"] == "" {
		t.Errorf("parts = %v, want text and html", p)
	}
	bad := sample("1")
	bad.To = "nobody"
	if err := o.Send(t.Context(), bad); !errors.Is(err, mailer.ErrPermanent) {
		t.Errorf("outbox send to a bad address: %v, want ErrPermanent", err)
	}
}

func TestOpenPicksTheSender(t *testing.T) {
	dir := t.TempDir()
	s, err := mailer.Open("", from, dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*mailer.Outbox); !ok {
		t.Errorf("Open without a URL = %T, want *Outbox", s)
	}
	srv := testenv.SMTP(t)
	s, err = mailer.Open(srv.URL(), from, dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*mailer.SMTPSender); !ok {
		t.Errorf("Open with a URL = %T, want *SMTPSender", s)
	}
	if _, err := mailer.Open("smtp://h:25", "not an address", dir, clock); err == nil {
		t.Error("Open with a bad From address: no error")
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// A connection that is busy takes its next message early: that message's
// Begin runs while the one before is still on the wire, not after it, so
// that the ledger round trip is not in front of every transaction.
func TestNextMessageBeginsWhileOneIsOnTheWire(t *testing.T) {
	srv := testenv.SMTP(t)
	srv.SetDelay(300 * time.Millisecond)
	s := newSMTP(t, srv, "&workers=1")
	first := make(chan struct{})
	m0 := sample("10")
	m0.Begin = func() error { close(first); return nil }
	errs := make(chan error, 3)
	go func() { errs <- s.Send(t.Context(), m0) }()
	<-first // m0 is on the wire; the next two wait for the one connection
	var mu sync.Mutex
	begun, done := map[string]time.Time{}, map[string]time.Time{}
	for _, id := range []string{"11", "12"} {
		m := sample(id)
		m.Begin = func() error {
			mu.Lock()
			defer mu.Unlock()
			begun[id] = time.Now()
			return nil
		}
		go func() {
			err := s.Send(t.Context(), m)
			mu.Lock()
			done[id] = time.Now()
			mu.Unlock()
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	last, other := "12", "11"
	if done["11"].After(done["12"]) {
		last, other = "11", "12"
	}
	// The server takes 300 ms a message: a Begin run beside the
	// transaction before comes well before that one is done.
	if ahead := done[other].Sub(begun[last]); ahead < 150*time.Millisecond {
		t.Errorf("Begin of the second waiting message ran %v before the first was done; want it while the first was on the wire (about 300ms before)", ahead)
	}
	if got := len(srv.Messages()); got != 3 {
		t.Errorf("server got %d messages, want 3", got)
	}
}
