package bounces_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"renewals/pkg/bounce"
	"renewals/pkg/event"
	"renewals/pkg/kvstore"
	"renewals/pkg/natsbus"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
	"renewals/services/bounces"
)

const domain = "bounces.reseller.example"

var (
	end = subscription.MustDate("2027-03-31")
	key = subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: end, Milestone: 90}
	t0  = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
)

// bundle is a service on real stores (the embedded key-value store on an
// embedded NATS server) and its receiver on a free port, with one notice
// sent to jo.bloggs@customer.example.
type bundle struct {
	svc   *bounces.Service
	addr  string
	js    jetstream.JetStream
	kinds []string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx := t.Context()
	if err := natsbus.EnsureStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	st, l, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := bounce.NewTagger(domain, []byte("test-secret-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{js: js}
	b.svc = &bounces.Service{Store: st, Ledger: l, Tagger: tg, JS: js, Now: func() time.Time { return t0 }, Log: zap.NewNop(),
		Observe: func(k string) { b.kinds = append(b.kinds, k) }}
	sub := subscription.Subscription{ID: key.SubscriptionID, EndDate: end, Status: subscription.StatusActive,
		ContractManager: subscription.Contact{Name: "Jo Bloggs", Email: "jo.bloggs@customer.example"}}
	if _, err := st.Upsert(ctx, []subscription.Subscription{sub}); err != nil {
		t.Fatal(err)
	}
	if err := l.Claim(ctx, key, "tok", t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Confirm(ctx, key, "tok", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: t0}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&bounces.Receiver{Service: b.svc, Log: zap.NewNop(), Timeout: 5 * time.Second}).Serve(rctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("receiver: %v", err)
		}
	})
	b.addr = ln.Addr().String()
	return b
}

// fixture is a pkg/bounce fixture addressed to rp instead of its
// placeholder tag.
func fixture(t *testing.T, name, rp string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "pkg", "bounce", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(raw, []byte("bounce+110001234567=20270331=90=0123456789=0123456789abcdef@bounces.reseller.example"), []byte(rp))
}

func (b *bundle) send(t *testing.T, rcpt string, msg []byte) error {
	t.Helper()
	return testenv.Deliver(t, b.addr, rcpt, msg)
}

func (b *bundle) entry(t *testing.T) subscription.Entry {
	t.Helper()
	e, err := b.svc.Ledger.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (b *bundle) bounceEvents(t *testing.T) []event.NoticeBounced {
	t.Helper()
	st, err := b.js.Stream(t.Context(), event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context(), jetstream.WithSubjectFilter(event.SubjectBounced))
	if err != nil {
		t.Fatal(err)
	}
	var out []event.NoticeBounced
	for seq := uint64(1); info.State.Subjects[event.SubjectBounced] > 0; {
		m, err := st.GetMsg(t.Context(), seq, jetstream.WithGetMsgSubject(event.SubjectBounced))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var d event.NoticeBounced
		if _, err := event.Decode(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
		seq = m.Sequence + 1
	}
	return out
}

func (b *bundle) suppressed(t *testing.T, addr string) bool {
	t.Helper()
	_, ok, err := b.svc.Store.(subscription.Suppressions).Suppressed(t.Context(), b.svc.Tagger.AddressHash(addr))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestReceiverKinds delivers a delay, an out-of-office reply and a
// malformed report, then the hard bounce twice: only the hard bounce
// changes the ledger and the suppression list, once.
func TestReceiverKinds(t *testing.T) {
	b := setup(t)
	rp := b.svc.Tagger.ReturnPath(key, "jo.bloggs@customer.example")
	for _, name := range []string{"postfix-delay.eml", "out-of-office.eml", "malformed.eml"} {
		if err := b.send(t, rp, fixture(t, name, rp)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if e := b.entry(t); e.Outcome != subscription.OutcomeSent {
			t.Fatalf("after %s the notice is %s", name, e.Outcome)
		}
	}
	if b.suppressed(t, "jo.bloggs@customer.example") {
		t.Fatal("a soft bounce, an auto-reply or a malformed report suppressed the address")
	}
	evs := b.bounceEvents(t)
	if len(evs) != 1 || evs[0].Kind != "soft" || evs[0].Status != "4.4.1" || evs[0].NoticeKey != key {
		t.Errorf("events after the soft bounce = %+v, want one soft 4.4.1", evs)
	}
	for range 2 { // the relay may deliver the same DSN twice
		if err := b.send(t, rp, fixture(t, "exim.eml", rp)); err != nil {
			t.Fatal(err)
		}
	}
	e := b.entry(t)
	if e.Outcome != subscription.OutcomeBounced || e.Status != "5.1.1" || !e.At.Equal(t0) || len(e.History) != 1 {
		t.Errorf("after the hard bounce: %+v", e)
	}
	if !b.suppressed(t, "JO.Bloggs@customer.example") || b.suppressed(t, "someone.else@customer.example") {
		t.Error("the suppression list does not hold exactly the bounced address")
	}
	hard := 0
	for _, ev := range b.bounceEvents(t) {
		if ev.Kind == "hard" {
			hard++
		}
	}
	if hard != 1 {
		t.Errorf("%d hard bounce events, want 1 (the repeat is one message in the stream)", hard)
	}
	if got := strings.Join(b.kinds, ","); got != "soft,auto-reply,unreadable,hard,hard" {
		t.Errorf("kinds observed = %s", got)
	}
	// The notifier's check.
	reason, err := b.svc.Suppressed(t.Context(), subscription.Subscription{ContractManager: subscription.Contact{Email: "jo.bloggs@customer.example"}})
	if err != nil || reason != "address bounced on 3 Dec 2026" {
		t.Errorf("Suppressed = %q, %v", reason, err)
	}
}

// TestForgedBouncesRefusedAtRcpt: a bad HMAC, a notice never sent and a
// foreign domain get 550 at RCPT, and nothing changes.
func TestForgedBouncesRefusedAtRcpt(t *testing.T) {
	b := setup(t)
	rp := b.svc.Tagger.ReturnPath(key, "jo.bloggs@customer.example")
	other, _ := bounce.NewTagger(domain, []byte("someone-elses-secret-0123"))
	never := b.svc.Tagger.ReturnPath(subscription.NoticeKey{SubscriptionID: "999", EndDate: end, Milestone: 90}, "jo.bloggs@customer.example")
	for name, rcpt := range map[string]string{
		"bad HMAC":      rp[:strings.LastIndexByte(rp, '=')+1] + "ffffffffffffffff@" + domain,
		"other secret":  other.ReturnPath(key, "jo.bloggs@customer.example"),
		"unknown tag":   never,
		"wrong domain":  strings.Replace(rp, domain, "example.org", 1),
		"plain address": "renewals@" + domain,
	} {
		err := b.send(t, rcpt, fixture(t, "postfix.eml", rcpt))
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 {
			t.Errorf("%s: %v, want 550", name, err)
		}
	}
	if e := b.entry(t); e.Outcome != subscription.OutcomeSent || len(e.History) != 0 {
		t.Errorf("the forged bounces changed the notice: %+v", e)
	}
	if b.suppressed(t, "jo.bloggs@customer.example") || len(b.bounceEvents(t)) != 0 || len(b.kinds) != 0 {
		t.Error("a forged bounce left a trace")
	}
}

// TestFeedSavedBounce: a bounce forwarded into a mailbox, with the bounce
// address only in the returned message's header, is found and verified.
func TestFeedSavedBounce(t *testing.T) {
	b := setup(t)
	rp := b.svc.Tagger.ReturnPath(key, "jo.bloggs@customer.example")
	raw := bytes.Replace(fixture(t, "postfix.eml", rp), []byte("To: "+rp), []byte("To: renewals-team@reseller.example"), 1)
	res, err := b.svc.Feed(t.Context(), raw)
	if err != nil || res.Kind != bounce.Hard || !res.Changed || res.Key != key {
		t.Fatalf("Feed = %+v, %v", res, err)
	}
	if _, err := b.svc.Feed(t.Context(), fixture(t, "postfix.eml", "nobody@reseller.example")); !errors.Is(err, bounces.ErrUnknownTag) {
		t.Errorf("Feed of a bounce with no bounce address: %v", err)
	}
}

// TestResend: refused while the address is the one that bounced, forced
// with a reason (which lifts the suppression), idempotent while queued, and
// refused once the notice went again.
func TestResend(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	rp := b.svc.Tagger.ReturnPath(key, "jo.bloggs@customer.example")
	if _, err := b.svc.Resend(ctx, key, false, ""); !errors.Is(err, bounces.ErrConflict) {
		t.Errorf("resend of a sent notice: %v, want a conflict", err)
	}
	if err := b.send(t, rp, fixture(t, "postfix.eml", rp)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Resend(ctx, key, false, ""); !errors.Is(err, bounces.ErrConflict) || !strings.Contains(err.Error(), "has not changed") {
		t.Errorf("resend to the address that bounced: %v", err)
	}
	if _, err := b.svc.Resend(ctx, key, true, "  "); !errors.Is(err, bounces.ErrInvalid) {
		t.Errorf("forced resend without a reason: %v", err)
	}
	if _, err := b.svc.Resend(ctx, subscription.NoticeKey{SubscriptionID: "nope", EndDate: end, Milestone: 90}, false, ""); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("resend of an unknown notice: %v", err)
	}
	for range 2 { // a retried request
		res, err := b.svc.Resend(ctx, key, true, "mailbox restored; ask jo.bloggs@customer.example")
		if err != nil || res.Status != "queued" || !res.Forced {
			t.Fatalf("forced resend = %+v, %v", res, err)
		}
	}
	e := b.entry(t)
	if e.Outcome != "" || len(e.Resent) != 1 || len(e.History) != 2 || e.Reason != "resend forced: mailbox restored; ask <address>" {
		t.Errorf("entry after the forced resend = %+v", e)
	}
	if b.suppressed(t, "jo.bloggs@customer.example") {
		t.Error("a forced resend left the address suppressed")
	}
	st, err := b.js.Stream(ctx, event.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(event.SubjectDue(90)))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[event.SubjectDue(90)]; n != 1 {
		t.Fatalf("%d due messages for the resend, want 1", n)
	}
	m, err := st.GetLastMsgForSubject(ctx, event.SubjectDue(90))
	if err != nil {
		t.Fatal(err)
	}
	var due event.NoticeDue
	if _, err := event.Decode(m.Data, &due); err != nil || due.NoticeKey != key || !due.Resend {
		t.Errorf("due message = %+v, %v", due, err)
	}
	// The notifier sends it; a further resend to the same address is refused.
	if err := b.svc.Ledger.Claim(ctx, key, "tok2", t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Ledger.Confirm(ctx, key, "tok2", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Resend(ctx, key, true, "again"); !errors.Is(err, bounces.ErrConflict) {
		t.Errorf("resend of the resent notice: %v", err)
	}
}

// TestContractEmailBounce: a hard bounce of a contract email (its bounce
// address names its first key) records the bounce on every notice that
// went in it, and on no other: not on the contract's subscription with
// another contract manager.
func TestContractEmailBounce(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	cm := subscription.Contact{Name: "Jo Bloggs", Email: "jo.bloggs@customer.example"}
	subs := []subscription.Subscription{
		{ID: key.SubscriptionID, EndDate: end, Status: subscription.StatusActive, ContractNumber: "7001", ContractManager: cm},
		{ID: "110001234568", EndDate: end, Status: subscription.StatusActive, ContractNumber: "7001", ContractManager: subscription.Contact{Email: "JO.BLOGGS@customer.example"}},
		{ID: "110001234569", EndDate: end, Status: subscription.StatusActive, ContractNumber: "7001", ContractManager: subscription.Contact{Email: "other@customer.example"}},
		{ID: "110001234570", EndDate: end, Status: subscription.StatusActive, ContractNumber: "7002", ContractManager: cm},
	}
	if _, err := b.svc.Store.Upsert(ctx, subs); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs[1:] {
		k := subscription.NoticeKey{SubscriptionID: s.ID, EndDate: end, Milestone: 90}
		if err := b.svc.Ledger.Claim(ctx, k, "tok", t0, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Ledger.Confirm(ctx, k, "tok", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	rp := b.svc.Tagger.ReturnPath(key, "jo.bloggs@customer.example")
	for range 2 { // a repeat changes nothing
		if err := b.send(t, rp, fixture(t, "exim.eml", rp)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]subscription.Outcome{
		key.SubscriptionID: subscription.OutcomeBounced, "110001234568": subscription.OutcomeBounced,
		"110001234569": subscription.OutcomeSent, "110001234570": subscription.OutcomeSent,
	}
	for id, o := range want {
		e, err := b.svc.Ledger.Get(ctx, subscription.NoticeKey{SubscriptionID: id, EndDate: end, Milestone: 90})
		if err != nil || e.Outcome != o {
			t.Errorf("notice of %s: %+v, %v; want %s", id, e, err, o)
		}
	}
	var hard []string
	for _, ev := range b.bounceEvents(t) {
		if ev.Kind == "hard" {
			hard = append(hard, ev.SubscriptionID)
		}
	}
	if slices.Sort(hard); !slices.Equal(hard, []string{key.SubscriptionID, "110001234568"}) {
		t.Errorf("hard bounce events for %v, want the contract email's two notices once each", hard)
	}
}
