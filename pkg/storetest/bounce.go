package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

// RunBounce runs the conformance suite of the bounce ledger and the
// suppression list: the backend's Ledger (and Peer) must implement
// subscription.BounceLedger and its Store subscription.Suppressions.
func RunBounce(t *testing.T, open func(t *testing.T) Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"BounceTurnsSentIntoBounced", testBounce},
		{"ReopenOncePerRecipient", testReopen},
		{"SuppressLookUpLift", testSuppress},
		{"EraseRemovesTheSubscriptionsSuppressions", testSuppressErase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			if _, ok := b.Ledger.(subscription.BounceLedger); !ok {
				t.Fatal("storetest: the Ledger does not implement subscription.BounceLedger")
			}
			if _, ok := b.Store.(subscription.Suppressions); !ok {
				t.Fatal("storetest: the Store does not implement subscription.Suppressions")
			}
			tc.fn(t, b)
		})
	}
}

// sendOne claims and confirms k as sent at t0.
func sendOne(t *testing.T, l subscription.Ledger, k subscription.NoticeKey, token string) {
	t.Helper()
	mustClaim(t, l, k, token, t0)
	if _, err := l.Confirm(ctxT(t), k, token, subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: t0}); err != nil {
		t.Fatalf("Confirm(%s): %v", k, err)
	}
}

func testBounce(t *testing.T, b Backend) {
	l, ctx := b.Ledger.(subscription.BounceLedger), ctxT(t)
	k := key("B1", 90)
	at := t0.Add(10 * time.Minute)
	_, _, err := l.Bounce(ctx, k, "5.1.1", "user unknown", at)
	wantErr(t, "bounce of a notice never claimed", err, subscription.ErrNotFound)

	sendOne(t, b.Ledger, k, "tok-b1")
	e, changed, err := l.Bounce(ctx, k, "5.1.1", "user unknown", at)
	if err != nil || !changed {
		t.Fatalf("Bounce = %v, changed %v; want a change", err, changed)
	}
	if e.Outcome != subscription.OutcomeBounced || e.Status != "5.1.1" || e.Reason != "user unknown" || !e.At.Equal(at) {
		t.Errorf("bounced entry = %+v", e)
	}
	if len(e.History) != 1 || e.History[0].Outcome != subscription.OutcomeSent || !e.History[0].At.Equal(t0) || e.History[0].Role != subscription.RoleContractManager {
		t.Errorf("history after bounce = %+v, want the sent attempt", e.History)
	}
	// What the other process reads is what was written.
	if p := lget(t, b.Peer, k); p.Outcome != subscription.OutcomeBounced || p.Status != "5.1.1" || len(p.History) != 1 {
		t.Errorf("peer reads %+v", p)
	}
	// A repeat (the relay delivered the DSN twice) changes nothing.
	if _, changed, err := l.Bounce(ctx, k, "5.1.1", "user unknown", at.Add(time.Minute)); err != nil || changed {
		t.Errorf("repeated Bounce = %v, changed %v; want no change", err, changed)
	}
	if e := lget(t, b.Ledger, k); len(e.History) != 1 || !e.At.Equal(at) {
		t.Errorf("after the repeat: %+v", e)
	}
	// Bounced is final: never due again, never claimed again.
	sent, err := b.Ledger.Sent(ctx, []subscription.NoticeKey{k})
	if err != nil || !sent[k] {
		t.Errorf("Sent(bounced) = %v, %v; want true", sent, err)
	}
	wantErr(t, "claim of a bounced notice", b.Peer.Claim(ctx, k, "tok-x", t0.Add(time.Hour), lease), subscription.ErrAlreadySent)

	// Only a sent notice can bounce.
	f := key("B1", 45)
	mustClaim(t, b.Ledger, f, "tok-f", t0)
	_, _, err = l.Bounce(ctx, f, "5.1.1", "", at)
	wantErr(t, "bounce of a claimed notice", err, subscription.ErrNotSent)
	if _, err := b.Ledger.Confirm(ctx, f, "tok-f", subscription.Entry{Outcome: subscription.OutcomeFailed, Reason: "550", At: t0}); err != nil {
		t.Fatal(err)
	}
	_, _, err = l.Bounce(ctx, f, "5.1.1", "", at)
	wantErr(t, "bounce of a failed notice", err, subscription.ErrNotSent)
}

func testReopen(t *testing.T, b Backend) {
	l, ctx := b.Ledger.(subscription.BounceLedger), ctxT(t)
	k := key("R1", 90)
	_, err := l.Reopen(ctx, k, "rcpt-new", "resend requested", t0)
	wantErr(t, "reopen of a notice never claimed", err, subscription.ErrNotFound)
	sendOne(t, b.Ledger, k, "tok-r1")
	_, err = l.Reopen(ctx, k, "rcpt-new", "resend requested", t0)
	wantErr(t, "reopen of a sent notice", err, subscription.ErrNotResendable)
	at := t0.Add(time.Hour)
	if _, _, err := l.Bounce(ctx, k, "5.1.1", "user unknown", at); err != nil {
		t.Fatal(err)
	}
	re := at.Add(time.Hour)
	e, err := l.Reopen(ctx, k, "rcpt-new", "resend requested", re)
	if err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	if e.Outcome != "" || e.Status != "" || !slices.Equal(e.Resent, []string{"rcpt-new"}) || len(e.History) != 2 ||
		e.History[1].Outcome != subscription.OutcomeBounced || e.History[1].Status != "5.1.1" || !e.History[1].At.Equal(at) {
		t.Errorf("reopened entry = %+v", e)
	}
	// A retried request changes nothing while the notice is open.
	if e2, err := l.Reopen(ctx, k, "rcpt-new", "resend requested", re.Add(time.Second)); err != nil || len(e2.History) != 2 {
		t.Errorf("repeated Reopen = %+v, %v", e2, err)
	}
	sent, err := b.Ledger.Sent(ctx, []subscription.NoticeKey{k})
	if err != nil || sent[k] {
		t.Errorf("Sent(reopened) = %v, %v; want false", sent, err)
	}
	// The resend goes through the usual claim and confirm; the ledger keeps both attempts.
	mustClaim(t, b.Peer, k, "tok-r2", re)
	_, err = l.Reopen(ctx, k, "rcpt-other", "resend requested", re.Add(time.Second))
	wantErr(t, "reopen while claimed", err, subscription.ErrNotResendable)
	if _, err := b.Peer.Confirm(ctx, k, "tok-r2", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: re}); err != nil {
		t.Fatal(err)
	}
	got := lget(t, b.Ledger, k)
	if got.Outcome != subscription.OutcomeSent || got.Attempts != 2 || len(got.History) != 2 || got.Status != "" {
		t.Errorf("entry after the resend = %+v", got)
	}
	// Exactly once per recipient.
	if _, _, err := l.Bounce(ctx, k, "5.2.2", "mailbox full", re.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, err = l.Reopen(ctx, k, "rcpt-new", "resend requested", re.Add(2*time.Minute))
	wantErr(t, "second resend to the same recipient", err, subscription.ErrResent)
	if _, err := l.Reopen(ctx, k, "rcpt-third", "resend requested", re.Add(2*time.Minute)); err != nil {
		t.Errorf("resend to another recipient: %v", err)
	}

	// Failed and undeliverable notices can be resent too.
	u := key("R1", 45)
	mustClaim(t, b.Ledger, u, "tok-u", t0)
	if _, err := b.Ledger.Confirm(ctx, u, "tok-u", subscription.Entry{Outcome: subscription.OutcomeUndeliverable, Reason: "address bounced", At: t0}); err != nil {
		t.Fatal(err)
	}
	if e, err := l.Reopen(ctx, u, "rcpt-u", "resend requested", re); err != nil || e.Outcome != "" || len(e.History) != 1 || e.History[0].Outcome != subscription.OutcomeUndeliverable {
		t.Errorf("Reopen(undeliverable) = %+v, %v", e, err)
	}
}

// Address hashes as package bounce writes them: lower-case hex.
const (
	hashA = "00aa11bb22cc33dd44ee55ff66778899aabbccddeeff00112233445566778899"
	hashB = "ff00ee11dd22cc33bb44aa5599887766ffeeddccbbaa99887766554433221100"
)

func testSuppress(t *testing.T, b Backend) {
	s, ctx := b.Store.(subscription.Suppressions), ctxT(t)
	if _, ok, err := s.Suppressed(ctx, hashA); err != nil || ok {
		t.Fatalf("Suppressed on an empty list = %v, %v", ok, err)
	}
	first := subscription.Suppression{SubscriptionID: "S1", Notice: key("S1", 90), Status: "5.1.1", At: t0}
	later := subscription.Suppression{SubscriptionID: "S2", Notice: key("S2", 45), Status: "5.1.1", At: t0.Add(time.Hour)}
	for _, sup := range []subscription.Suppression{later, first, first} {
		if err := s.Suppress(ctx, hashA, sup); err != nil {
			t.Fatalf("Suppress: %v", err)
		}
	}
	got, ok, err := s.Suppressed(ctx, hashA)
	if err != nil || !ok || got.SubscriptionID != "S1" || got.Notice != first.Notice || got.Status != "5.1.1" || !got.At.Equal(t0) {
		t.Errorf("Suppressed = %+v, %v, %v; want the earliest record", got, ok, err)
	}
	if _, ok, _ := s.Suppressed(ctx, hashB); ok {
		t.Error("another address is suppressed too")
	}
	// SuppressedMany answers each address as Suppressed does, in order.
	sups, found, err := s.SuppressedMany(ctx, []string{hashB, hashA, hashB})
	if err != nil || len(sups) != 3 || len(found) != 3 {
		t.Fatalf("SuppressedMany = %v, %v, %v; want three answers", sups, found, err)
	}
	if found[0] || found[2] || !found[1] || sups[1].SubscriptionID != "S1" || !sups[1].At.Equal(t0) {
		t.Errorf("SuppressedMany(B, A, B) = %+v, %v; want A's earliest record alone", sups, found)
	}
	if _, _, err := s.SuppressedMany(ctx, []string{hashA, "Not-Hex!"}); err == nil {
		t.Error("SuppressedMany took an address hash that is not hex")
	}
	if err := s.Suppress(ctx, "Not-Hex!", first); err == nil {
		t.Error("Suppress took an address hash that is not hex")
	}
	if err := s.Unsuppress(ctx, hashA); err != nil {
		t.Fatalf("Unsuppress: %v", err)
	}
	if _, ok, err := s.Suppressed(ctx, hashA); err != nil || ok {
		t.Errorf("Suppressed after Unsuppress = %v, %v", ok, err)
	}
}

func testSuppressErase(t *testing.T, b Backend) {
	s, ctx := b.Store.(subscription.Suppressions), ctxT(t)
	upsert(t, b.Store, sub("E1", base), sub("E2", base))
	// hashA bounced for E1 only; hashB for E1 and E2.
	for _, x := range []struct {
		addr, id string
	}{{hashA, "E1"}, {hashB, "E1"}, {hashB, "E2"}} {
		if err := s.Suppress(ctx, x.addr, subscription.Suppression{SubscriptionID: x.id, Notice: key(x.id, 90), Status: "5.1.1", At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the suppression list to reach every place the dump reads", func() bool {
		return len(find(b.Dump(t), map[string][]byte{"hash": []byte(hashA)})) > 0
	})
	if err := b.Store.Erase(ctx, "E1"); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if _, ok, err := s.Suppressed(ctx, hashA); err != nil || ok {
		t.Errorf("the erased subscription's address is still suppressed: %v, %v", ok, err)
	}
	if got, ok, err := s.Suppressed(ctx, hashB); err != nil || !ok || got.SubscriptionID != "E2" {
		t.Errorf("the other subscription's record of a shared address = %+v, %v, %v; want E2's", got, ok, err)
	}
	var found []string
	waitFor(t, "the erased subscription's address hash to leave every stored byte", func() bool {
		found = find(b.Dump(t), map[string][]byte{"address hash": []byte(hashA)})
		return len(found) == 0
	}, func() string { return "still found: " + joinNames(found) })
	if errors.Is(b.Store.Erase(ctx, "E2"), nil) {
		waitFor(t, "the last record of the shared address to leave every stored byte", func() bool {
			found = find(b.Dump(t), map[string][]byte{"address hash": []byte(hashB)})
			return len(found) == 0
		}, func() string { return "still found: " + joinNames(found) })
	}
}

func joinNames(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}
