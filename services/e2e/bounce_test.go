package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/bounce"
	"renewals/pkg/event"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/calllist"
)

// postfixDSN is the delivery status notification Postfix writes when the
// contract manager's server refuses rcpt after it took the message: to the
// message's Return-Path, with the message's header returned.
func postfixDSN(returnPath, rcpt string, original []byte) []byte {
	header, _, _ := bytes.Cut(original, []byte("\r\n\r\n"))
	const b = "4F2A81C0123.1764580321/mx.relay.example"
	return []byte(strings.ReplaceAll(`Return-Path: <>
Date: Tue,  1 Dec 2026 09:12:01 +0000 (UTC)
From: MAILER-DAEMON@mx.relay.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: `+returnPath+`
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="`+b+`"
Content-Transfer-Encoding: 8bit
Message-Id: <20261201091201.4F2A81C0123@mx.relay.example>

This is a MIME-encapsulated message.

--`+b+`
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.relay.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<`+rcpt+`>: host mail.customer.example[203.0.113.25] said: 550 5.1.1
    <`+rcpt+`>: Recipient address rejected: User unknown in virtual mailbox
    table (in reply to RCPT TO command)

--`+b+`
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.relay.example
X-Postfix-Queue-ID: 4F2A81C0123
X-Postfix-Sender: rfc822; `+returnPath+`
Arrival-Date: Tue,  1 Dec 2026 09:11:58 +0000 (UTC)

Final-Recipient: rfc822; `+rcpt+`
Original-Recipient: rfc822;`+rcpt+`
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.customer.example
Diagnostic-Code: smtp; 550 5.1.1 <`+rcpt+`>: Recipient address rejected: User
    unknown in virtual mailbox table

--`+b+`
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

`, "\n", "\r\n") + string(header) + "\r\n\r\n--" + b + "--\r\n")
}

func refusedWith(err error, code int) bool {
	se, ok := err.(*smtp.SMTPError)
	return ok && se.Code == code
}

type noticesAnswer struct {
	Notices []subscription.Entry `json:"notices"`
}

func ledgerEntry(t *testing.T, s *Server, key subscription.NoticeKey) subscription.Entry {
	t.Helper()
	var out noticesAnswer
	if code := s.API(t, http.MethodGet, "/api/v1/notices?subscription_id="+key.SubscriptionID, nil, &out); code != http.StatusOK {
		t.Fatalf("GET notices: %d", code)
	}
	for _, e := range out.Notices {
		if e.Key == key {
			return e
		}
	}
	return subscription.Entry{}
}

// TestBounceClosesTheLoop sends notices through an in-process relay, returns
// a Postfix DSN for one of them to the bounce receiver at that message's
// Return-Path, and follows what it does: the ledger says bounced, the event
// names no address, the call list puts the subscription first with the
// status in its reason, the next milestone's notice to the same address is
// undeliverable without an SMTP connection, and once the contract manager's
// email changed (by re-import) a resend delivers, once. Forged bounces
// (bad HMAC, unknown tag, foreign domain) are refused at RCPT and change
// nothing.
func TestBounceClosesTheLoop(t *testing.T) {
	relay := testenv.SMTP(t)
	const domain = "bounces.reseller.example"
	secret := "e2e-bounce-secret-0123456789abcdef"
	bounceAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	natsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	s := Start(t, Options{Env: map[string]string{
		"RENEWALS_SMTP_URL": relay.URL(), "RENEWALS_NATS_LISTEN": natsAddr, "RENEWALS_MAIL_FROM": "renewals@reseller.example",
		"RENEWALS_BOUNCE_DOMAIN": domain, "RENEWALS_BOUNCE_LISTEN": bounceAddr, "RENEWALS_BOUNCE_SECRET": secret,
	}})
	today := subscription.Today(time.Now(), time.UTC)
	const cmOld, cmNew = "jo.bloggs@customer.example", "jo.b@customer.example"
	rows := []row{
		{id: "300000000001", customer: "Bloggs plc", product: "AutoCAD", end: today.AddDays(50), seats: "3", assigned: "3", status: "active",
			cmName: "Jo Bloggs", cmEmail: cmOld, cmTel: "+44 1254 000301", rep: "Sam"},
		// Fewer days left: it would rank first, but for the bounce.
		{id: "300000000002", customer: "Soon Ltd", product: "Revit", end: today.AddDays(10), seats: "1", assigned: "1", status: "active",
			cmName: "Sol Soon", cmEmail: "sol.soon@soon.example", cmTel: "+44 1254 000302", rep: "Sam"},
	}
	if r := s.CLI(t, "import", writePortfolio(t, rows)); r.Code != 0 {
		t.Fatalf("import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.CLI(t, "run", "--as-of", today.String(), "--wait"); r.Code != 0 {
		t.Fatalf("run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	sent := relay.WaitFor(2, 30*time.Second)
	k90 := subscription.NoticeKey{SubscriptionID: "300000000001", EndDate: today.AddDays(50), Milestone: 90}
	i := slices.IndexFunc(sent, func(m testenv.SMTPMessage) bool { return slices.Contains(m.To, cmOld) })
	if i < 0 {
		t.Fatalf("no notice went to the contract manager: %+v", sent)
	}
	notice := sent[i]
	// The envelope sender is the notice's bounce address; From stays the reseller's.
	if !strings.HasPrefix(notice.From, "bounce+300000000001=") || !strings.HasSuffix(notice.From, "@"+domain) {
		t.Fatalf("MAIL FROM = %q, want bounce+<tag>@%s", notice.From, domain)
	}
	parsed, err := notice.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if from, _ := mail.ParseAddress(parsed.Header.Get("From")); from == nil || from.Address != "renewals@reseller.example" || from.Name != SampleReseller {
		t.Errorf("From = %q, want the reseller", parsed.Header.Get("From"))
	}
	if parsed.Header.Get("Auto-Submitted") != "auto-generated" || parsed.Header.Get("List-Unsubscribe") != "" {
		t.Errorf("Auto-Submitted = %q, List-Unsubscribe = %q", parsed.Header.Get("Auto-Submitted"), parsed.Header.Get("List-Unsubscribe"))
	}

	// Forged bounces are refused at RCPT and change nothing.
	tagger, err := bounce.NewTagger(domain, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	dsn := postfixDSN(notice.From, cmOld, notice.Data)
	badMAC := notice.From[:strings.LastIndexByte(notice.From, '=')+1] + "0000000000000000@" + domain
	unknown := tagger.ReturnPath(subscription.NoticeKey{SubscriptionID: "399999999999", EndDate: today.AddDays(50), Milestone: 90}, cmOld)
	foreign := strings.TrimSuffix(notice.From, domain) + "elsewhere.example"
	for what, rcpt := range map[string]string{"bad HMAC": badMAC, "unknown tag": unknown, "wrong domain": foreign, "no tag": "postmaster@" + domain} {
		if err := testenv.Deliver(t, bounceAddr, rcpt, postfixDSN(rcpt, cmOld, notice.Data)); !refusedWith(err, 550) {
			t.Errorf("%s: delivery answered %v, want 550 at RCPT", what, err)
		}
	}
	if e := ledgerEntry(t, s, k90); e.Outcome != subscription.OutcomeSent {
		t.Fatalf("after the forged bounces the 90-day notice is %+v, want still sent", e)
	}

	// The real DSN, at the message's Return-Path.
	if err := testenv.Deliver(t, bounceAddr, notice.From, dsn); err != nil {
		t.Fatalf("deliver the DSN: %v", err)
	}
	var e subscription.Entry
	testenv.Eventually(t, 10*time.Second, "the ledger to show the notice bounced", func() bool {
		e = ledgerEntry(t, s, k90)
		return e.Outcome == subscription.OutcomeBounced
	})
	if e.Status != "5.1.1" || e.At.IsZero() || !strings.Contains(e.Reason, "5.1.1 user unknown") || len(e.History) != 1 || e.History[0].Outcome != subscription.OutcomeSent {
		t.Errorf("bounced entry = %+v", e)
	}

	// The event: key, status, kind; no address.
	_, js := testenv.Connect(t, s.NATSURLAs(t, natsbus.ServiceUser))
	stream, err := js.Stream(t.Context(), event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var raw *jetstream.RawStreamMsg
	testenv.Eventually(t, 10*time.Second, "the bounced event in the stream", func() bool {
		raw, err = stream.GetLastMsgForSubject(t.Context(), event.SubjectBounced)
		return err == nil
	})
	var d event.NoticeBounced
	if _, err := event.Decode(raw.Data, &d); err != nil {
		t.Fatal(err)
	}
	if d.NoticeKey != k90 || d.Status != "5.1.1" || d.Kind != "hard" {
		t.Errorf("bounced event = %+v", d)
	}
	for _, p := range []string{cmOld, "jo.bloggs", "customer.example", "Jo Bloggs", notice.From} {
		if bytes.Contains(raw.Data, []byte(p)) {
			t.Errorf("the bounced event holds %q: %s", p, raw.Data)
		}
	}

	// The call list: the bounced subscription first, unreachable, the status in its reason.
	var list listAnswer
	testenv.Eventually(t, 10*time.Second, "the call list to rank the bounced subscription first", func() bool {
		list = getList(t, s, "as_of="+today.String())
		return len(list.Entries) > 0 && list.Entries[0].SubscriptionID == "300000000001" && list.Entries[0].Category == calllist.Unreachable
	})
	if r := list.Entries[0].Reason; !strings.Contains(r, "5.1.1") || !strings.Contains(r, "bounced") || strings.Contains(r, "@") {
		t.Errorf("call list reason = %q, want the bounce with its status and no address", r)
	}

	// The next milestone: undeliverable, with no SMTP connection.
	conns, msgs := relay.Connections(), len(relay.Messages())
	k45 := subscription.NoticeKey{SubscriptionID: "300000000001", EndDate: today.AddDays(50), Milestone: 45}
	if r := s.CLI(t, "run", "--as-of", today.AddDays(5).String(), "--wait"); r.Code != 0 {
		t.Fatalf("run: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	e45 := ledgerEntry(t, s, k45)
	if e45.Outcome != subscription.OutcomeUndeliverable || !strings.HasPrefix(e45.Reason, "address bounced on ") {
		t.Errorf("45-day notice = %+v, want undeliverable: address bounced on ...", e45)
	}
	if relay.Connections() != conns || len(relay.Messages()) != msgs {
		t.Errorf("the undeliverable notice reached the relay: connections %d -> %d, messages %d -> %d", conns, relay.Connections(), msgs, len(relay.Messages()))
	}

	// Resend refuses while the address is the one that bounced.
	if r := s.CLI(t, "resend", k90.String()); r.Code != 1 || !strings.Contains(r.Stderr, "has not changed") {
		t.Errorf("resend before the address changed: %d %q", r.Code, r.Stderr)
	}
	rows[0].cmEmail = cmNew
	if r := s.CLI(t, "import", writePortfolio(t, rows[:1])); r.Code != 0 {
		t.Fatalf("re-import: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := s.CLI(t, "resend", k90.String()); r.Code != 0 {
		t.Fatalf("resend: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	testenv.Eventually(t, 30*time.Second, "the resent notice to be sent", func() bool {
		e = ledgerEntry(t, s, k90)
		return e.Outcome == subscription.OutcomeSent
	})
	if len(e.History) != 2 || e.History[0].Outcome != subscription.OutcomeSent || e.History[1].Outcome != subscription.OutcomeBounced || len(e.Resent) != 1 {
		t.Errorf("ledger after the resend = %+v, want both attempts", e)
	}
	// Exactly once per notice and recipient: a second resend is refused.
	if r := s.CLI(t, "resend", k90.String()); r.Code != 1 {
		t.Errorf("second resend: %d %s %s, want refused", r.Code, r.Stdout, r.Stderr)
	}
	var resent []testenv.SMTPMessage
	for _, m := range relay.Messages() {
		if m.Data != nil && bytes.Contains(m.Data, []byte("X-Renewal-Notice: "+k90.String())) {
			resent = append(resent, m)
		}
	}
	if len(resent) != 2 || !slices.Equal(resent[1].To, []string{cmNew}) {
		var to [][]string
		for _, m := range resent {
			to = append(to, m.To)
		}
		t.Errorf("the 90-day notice went %d times, to %v; want once to the old address and once to the new", len(resent), to)
	}
	if got := fmt.Sprint(resent[len(resent)-1].From); len(resent) > 1 && (got == notice.From || !strings.HasSuffix(got, "@"+domain)) {
		t.Errorf("the resend's envelope sender %q should be its own bounce address", got)
	}

	// A delay notice of the resend that landed in a mailbox, fed by hand:
	// recorded, nothing else changes.
	if len(resent) > 1 {
		delay := postfixDSN(resent[1].From, cmNew, resent[1].Data)
		delay = bytes.Replace(delay, []byte("Action: failed\r\nStatus: 5.1.1"), []byte("Action: delayed\r\nStatus: 4.4.1"), 1)
		delay = bytes.Replace(delay, []byte("To: "+resent[1].From), []byte("To: renewals-team@reseller.example"), 1)
		file := filepath.Join(t.TempDir(), "delay.eml")
		if err := os.WriteFile(file, delay, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := s.CLI(t, "bounce", file); r.Code != 0 || !strings.Contains(r.Stdout, "delivery delayed (4.4.1") {
			t.Errorf("bounce FILE: %d %q %q", r.Code, r.Stdout, r.Stderr)
		}
		if e := ledgerEntry(t, s, k90); e.Outcome != subscription.OutcomeSent {
			t.Errorf("a delay changed the resent notice: %+v", e)
		}
	}
	if r := s.CLI(t, "bounce", writePortfolio(t, rows)); r.Code != 1 || !strings.Contains(r.Stderr, "names no bounce address") {
		t.Errorf("bounce of a file that is no bounce: %d %q", r.Code, r.Stderr)
	}

	// Metrics count the bounces by kind.
	_, body := s.Get(t, "/metrics")
	for _, want := range []string{`renewals_bounces_total{kind="hard"} 1`, `renewals_bounces_total{kind="soft"} 1`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Erasure leaves no trace of the bounced address in the suppression list:
	// not even its keyed hash, in any file of the data dir.
	hash := []byte(tagger.AddressHash(cmOld))
	if !bytes.Contains(bytes.Join(dataFiles(t, s.DataDir), nil), hash) {
		t.Fatal("positive control: the suppression list's hash of the bounced address is in no file of the data dir")
	}
	if r := s.CLI(t, "erase", "300000000001"); r.Code != 0 {
		t.Fatalf("erase: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}
	testenv.Eventually(t, 20*time.Second, "the erased subscription's address hash to leave every file", func() bool {
		return !bytes.Contains(bytes.Join(dataFiles(t, s.DataDir), nil), hash)
	})
}

// dataFiles reads every file under dir.
func dataFiles(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // a file the server removed meanwhile
		}
		if b, err := os.ReadFile(p); err == nil {
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
