package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

// callCases are the cases of subscription.CallStore and RenewalLog, which
// both stores implement.
func callCases() []struct {
	name string
	fn   func(*testing.T, Backend)
} {
	return []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"CallsRoundTripInOrder", testCalls},
		{"CallsNeedASubscription", testCallsNotFound},
		{"EraseLeavesNoCallNotes", testCallErasure},
		{"RenewalsEndingInclusiveOrdered", testRenewals},
	}
}

func callStore(t *testing.T, b Backend) subscription.CallStore {
	t.Helper()
	cs, ok := b.Store.(subscription.CallStore)
	if !ok {
		t.Fatalf("%T does not implement subscription.CallStore", b.Store)
	}
	return cs
}

func call(id string, at time.Time, o subscription.CallOutcome, note string) subscription.Call {
	return subscription.Call{
		ID: subscription.CallID(at), SubscriptionID: id, EndDate: base, At: at.UTC(), On: subscription.DateOf(at),
		Outcome: o, Caller: "Rep Person", Note: note,
	}
}

func testCalls(t *testing.T, b Backend) {
	cs := callStore(t, b)
	upsert(t, b.Store, sub("called", base), sub("other", base))
	t0 := time.Date(2027, 3, 1, 9, 0, 0, 0, time.UTC)
	want := []subscription.Call{
		call("called", t0, subscription.CallNoAnswer, ""),
		call("called", t0.Add(time.Hour), subscription.CallCallback, "call back Thursday"),
		call("called", t0.Add(2*time.Hour), subscription.CallSeatsChanged, "wants 12"),
	}
	want[1].CallbackOn = base.AddDays(-20)
	want[2].Seats = intp(12)
	for _, i := range []int{2, 0, 1} { // out of order: Calls orders by ID
		if err := cs.AddCall(ctxT(t), want[i]); err != nil {
			t.Fatalf("AddCall: %v", err)
		}
	}
	got, err := cs.Calls(ctxT(t), "called")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Calls = %d calls, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Outcome != w.Outcome || g.Note != w.Note || g.Caller != w.Caller || g.CallbackOn != w.CallbackOn ||
			!g.At.Equal(w.At) || g.On != w.On || g.EndDate != w.EndDate || (g.Seats == nil) != (w.Seats == nil) {
			t.Errorf("call %d = %+v, want %+v", i, g, w)
		}
	}
	if other, err := cs.Calls(ctxT(t), "other"); err != nil || len(other) != 0 {
		t.Errorf("Calls of a subscription without calls = %v, %v; want none", other, err)
	}
	if none, err := cs.Calls(ctxT(t), "nobody"); err != nil || len(none) != 0 {
		t.Errorf("Calls of an unknown subscription = %v, %v; want none, no error", none, err)
	}
}

func testCallsNotFound(t *testing.T, b Backend) {
	cs := callStore(t, b)
	err := cs.AddCall(ctxT(t), call("nobody", time.Now(), subscription.CallNoAnswer, ""))
	if !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("AddCall of an unknown subscription: err = %v, want ErrNotFound", err)
	}
	upsert(t, b.Store, sub("gone", base))
	if err := b.Store.Erase(ctxT(t), "gone"); err != nil {
		t.Fatal(err)
	}
	err = cs.AddCall(ctxT(t), call("gone", time.Now(), subscription.CallNoAnswer, ""))
	if !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("AddCall of an erased subscription: err = %v, want ErrNotFound", err)
	}
}

// testCallErasure: a call's note and caller are never stored in clear, and
// after Erase neither they nor the data key that sealed them is anywhere
// the backend keeps bytes.
func testCallErasure(t *testing.T, b Backend) {
	cs := callStore(t, b)
	r := randHex(t)
	upsert(t, b.Store, sub("noted", base), sub("bystander", base))
	c := call("noted", time.Now(), subscription.CallWrongContact, "Spoke to Notename Person "+r+", direct line 07700 900"+r[:3])
	c.Caller = "Callername " + r
	if err := cs.AddCall(ctxT(t), c); err != nil {
		t.Fatal(err)
	}
	kept := call("bystander", time.Now(), subscription.CallNoAnswer, "bystander note "+r)
	if err := cs.AddCall(ctxT(t), kept); err != nil {
		t.Fatal(err)
	}
	personal := map[string][]byte{"note": []byte(c.Note), "caller": []byte(c.Caller)}
	if found := find(b.Dump(t), personal); len(found) > 0 {
		t.Errorf("call note stored in clear: %v", found)
	}
	key := b.DataKey(t, "noted")
	waitFor(t, "the data key to reach every place the dump reads", func() bool {
		return len(find(b.Dump(t), map[string][]byte{"key": key})) > 0
	})
	if got, err := cs.Calls(ctxT(t), "noted"); err != nil || len(got) != 1 || got[0].Note != c.Note {
		t.Fatalf("Calls before Erase = %+v, %v", got, err)
	}
	if err := b.Store.Erase(ctxT(t), "noted"); err != nil {
		t.Fatal(err)
	}
	if got, err := cs.Calls(ctxT(t), "noted"); err != nil || len(got) != 0 {
		t.Errorf("Calls after Erase = %+v, %v; want none", got, err)
	}
	waitErased(t, b, key, personal)
	if got, err := cs.Calls(ctxT(t), "bystander"); err != nil || len(got) != 1 || got[0].Note != kept.Note {
		t.Errorf("erasure damaged another subscription's calls: %+v, %v", got, err)
	}
}

func testRenewals(t *testing.T, b Backend) {
	rl, ok := b.Store.(subscription.RenewalLog)
	if !ok {
		t.Fatalf("%T does not implement subscription.RenewalLog", b.Store)
	}
	f := func(id string, ended subscription.Date, stage string) subscription.RenewalFact {
		return subscription.RenewalFact{SubscriptionID: id, TermEnded: ended, NewEndDate: ended.AddDays(365), RenewedOn: ended.AddDays(-3), Stage: stage}
	}
	facts := []subscription.RenewalFact{
		f("b", base, subscription.StageBeforeEnd), f("a", base, "expired"), f("c", base.AddDays(1), "suspended"),
		f("d", base.AddDays(-1), subscription.StageBeforeEnd), f("e", base.AddDays(40), subscription.StageBeforeEnd),
	}
	if err := rl.AddRenewals(ctxT(t), facts); err != nil {
		t.Fatal(err)
	}
	if err := rl.AddRenewals(ctxT(t), facts[:2]); err != nil { // again: no duplicates
		t.Fatal(err)
	}
	var got []string
	err := rl.RenewalsEnding(ctxT(t), base, base.AddDays(1), func(x subscription.RenewalFact) error {
		got = append(got, x.SubscriptionID+":"+x.Stage)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:expired", "b:before_end", "c:suspended"}; !slices.Equal(got, want) {
		t.Errorf("RenewalsEnding = %v, want %v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err = rl.RenewalsEnding(ctxT(t), base.AddDays(-10), base.AddDays(100), func(subscription.RenewalFact) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("RenewalsEnding with a failing fn: err %v after %d calls, want stop after 1", err, n)
	}
}
