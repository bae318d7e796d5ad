// Package storetest is the conformance suite of subscription.Store and
// subscription.Ledger. Every implementation runs the same Run against a real
// server, so that the Redis store and the JetStream store cannot drift apart
// on a contract. It uses only the standard library's testing package.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"renewals/pkg/importer"
	"renewals/pkg/subscription"
)

// Backend is one freshly opened, empty store under test, with hooks that let
// the suite look beneath the interfaces.
type Backend struct {
	// Store and Ledger are the implementations under test. Both are required.
	Store  subscription.Store
	Ledger subscription.Ledger
	// Peer is a second Ledger on the same data, as another process would
	// open it: nothing it remembers is shared with Ledger. Required.
	Peer subscription.Ledger
	// Dump returns every byte the backend holds, by where it was found: each
	// key and value read through the server's API, and each file the server
	// keeps on disk. Required: the erasure test searches it.
	Dump func(t *testing.T) map[string][]byte
	// DataKey returns the raw data key under which the subscription's personal
	// data is sealed, exactly as stored. The erasure test checks that its
	// bytes are gone from every dump after Erase. Required.
	DataKey func(t *testing.T, id string) []byte
	// Corrupt overwrites the stored record of the subscription with bytes that
	// do not decode, leaving its index entries alone. EndingBetween must then
	// still work for every window that excludes it: proof that it reads
	// through the index and not by scanning. Required.
	Corrupt func(t *testing.T, id string)
}

// Run runs the conformance suite. open is called once per subtest and must
// return a backend on its own empty server (or namespace), cleaned up by
// t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	t.Helper()
	o := func(t *testing.T) Backend {
		t.Helper()
		b := open(t)
		if b.Store == nil || b.Ledger == nil || b.Peer == nil || b.Dump == nil || b.DataKey == nil || b.Corrupt == nil {
			t.Fatal("storetest: Backend needs Store, Ledger, Peer, Dump, DataKey and Corrupt")
		}
		return b
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"Ping", testPing},
		{"UpsertCreatedUpdatedUnchanged", testUpsertChanges},
		{"UpsertRepeatedIDsLaterWins", testUpsertRepeated},
		{"UpsertLargeBatch", testUpsertLarge},
		{"UpsertKeepsSeatUsage", testUpsertKeepsUsage},
		{"UsageImportKeepsNoIdentity", testUsageImportKeepsNoIdentity},
		{"GetRoundTripAndNotFound", testGet},
		{"EndingBetweenInclusiveOrdered", testEndingBetween},
		{"EndingBetweenFollowsEndDateChanges", testEndingBetweenMoves},
		{"EndingBetweenStopsAtFirstError", testEndingBetweenStops},
		{"EndingBetweenReadsOnlyTheWindow", testEndingBetweenWindowOnly},
		{"Erase", testErase},
		{"EraseLeavesNoPersonalBytes", testErasure},
		{"LedgerClaimLifecycle", testClaim},
		{"LedgerTakeoverMarksAmbiguous", testTakeover},
		{"LedgerTakeoverBeforeBeginIsNotAmbiguous", testTakeoverBeforeBegin},
		{"LedgerRenewAndBegin", testRenewBegin},
		{"LedgerTwoProcesses", testTwoProcesses},
		{"LedgerReleaseKeepsAmbiguous", testReleaseAmbiguous},
		{"LedgerConfirmWrongToken", testConfirmWrongToken},
		{"LedgerConfirmRepeated", testConfirmRepeated},
		{"LedgerNonSentOutcomesDoNotBlock", testNonSent},
		{"LedgerSentGetList", testSentGetList},
		{"LedgerConcurrentClaim", testConcurrentClaim},
		{"LedgerClaimManyConfirmMany", testClaimConfirmMany},
		{"LedgerManyAcrossProcesses", testManyAcrossProcesses},
	}
	tests = append(tests, callCases()...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, o(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var base = subscription.MustDate("2027-03-31")

func intp(n int) *int { return &n }

// sub returns a complete subscription with personal data in every field.
func sub(id string, end subscription.Date) subscription.Subscription {
	return subscription.Subscription{
		ID: id, EndDate: end, CustomerAccount: "ACC-" + id, CustomerName: "Customer " + id,
		Product: "Suite Pro", Seats: intp(25), SeatsAssigned: intp(20), AccessModel: subscription.MultiUser,
		Term: "P1Y", StartDate: end.AddDays(-365), Status: subscription.StatusActive,
		Timezone: "Europe/London", Locale: "en-GB", ResellerRep: "rep-7",
		ContractManager: subscription.Contact{Name: "CM " + id, Email: "cm-" + id + "@example.com", Phone: "+44 20 7946 0001"},
		PrimaryAdmin:    subscription.Contact{Name: "PA " + id, Email: "pa-" + id + "@example.com"},
		SecondaryAdmins: []string{"sa1-" + id + "@example.com", "sa2-" + id + "@example.com"},
	}
}

func upsert(t *testing.T, s subscription.Store, subs ...subscription.Subscription) []subscription.UpsertResult {
	t.Helper()
	res, err := s.Upsert(ctxT(t), subs)
	if err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if got, want := len(res), len(subs); got != want {
		t.Fatalf("Upsert returned %d results for %d subscriptions", got, want)
	}
	return res
}

func checkResult(t *testing.T, what string, got subscription.UpsertResult, change subscription.Change, prev subscription.Date) {
	t.Helper()
	if got.Change != change || got.PreviousEndDate != prev {
		t.Errorf("%s: result = {%s %v}, want {%s %v}", what, got.Change, got.PreviousEndDate, change, prev)
	}
}

func get(t *testing.T, s subscription.Store, id string) subscription.Subscription {
	t.Helper()
	got, err := s.Get(ctxT(t), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return got
}

func ending(t *testing.T, s subscription.Store, from, to subscription.Date) []subscription.Subscription {
	t.Helper()
	var out []subscription.Subscription
	if err := s.EndingBetween(ctxT(t), from, to, func(x subscription.Subscription) error {
		out = append(out, x)
		return nil
	}); err != nil {
		t.Fatalf("EndingBetween(%v, %v): %v", from, to, err)
	}
	return out
}

func ids(subs []subscription.Subscription) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = s.ID
	}
	return out
}

func testPing(t *testing.T, b Backend) {
	if err := b.Store.Ping(ctxT(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testUpsertChanges(t *testing.T, b Backend) {
	a, c, d := sub("a1", base), sub("c1", base.AddDays(10)), sub("d1", base.AddDays(20))
	res := upsert(t, b.Store, a, c, d)
	for i, r := range res {
		checkResult(t, fmt.Sprintf("first upsert row %d", i), r, subscription.Created, subscription.Date{})
	}
	res = upsert(t, b.Store, a, c, d)
	checkResult(t, "same a", res[0], subscription.Unchanged, a.EndDate)
	checkResult(t, "same c", res[1], subscription.Unchanged, c.EndDate)
	checkResult(t, "same d", res[2], subscription.Unchanged, d.EndDate)

	a2 := a
	a2.ContractManager.Email = "someone-else@example.com" // personal field only
	c2 := c
	c2.EndDate = base.AddDays(375) // renewal
	d2 := d
	d2.Seats = nil // clear field only
	res = upsert(t, b.Store, a2, c2, d2)
	checkResult(t, "a with a new contract manager", res[0], subscription.Updated, a.EndDate)
	checkResult(t, "c renewed", res[1], subscription.Updated, c.EndDate)
	checkResult(t, "d with seats unknown", res[2], subscription.Updated, d.EndDate)
	for _, want := range []subscription.Subscription{a2, c2, d2} {
		if got := get(t, b.Store, want.ID); !subscription.Equal(got, want) {
			t.Errorf("Get(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
	res = upsert(t, b.Store, c2)
	checkResult(t, "c renewed again with the same data", res[0], subscription.Unchanged, c2.EndDate)
}

func testUpsertRepeated(t *testing.T, b Backend) {
	v1 := sub("r1", base)
	v2 := v1
	v2.EndDate = base.AddDays(365)
	v3 := v2
	v3.ContractManager.Name = "Later Name"
	other := sub("r2", base)
	res := upsert(t, b.Store, v1, other, v2, v2, v3)
	checkResult(t, "first of r1", res[0], subscription.Created, subscription.Date{})
	checkResult(t, "r2", res[1], subscription.Created, subscription.Date{})
	checkResult(t, "r1 renewed in the same batch", res[2], subscription.Updated, v1.EndDate)
	checkResult(t, "r1 repeated", res[3], subscription.Unchanged, v2.EndDate)
	checkResult(t, "r1 changed again", res[4], subscription.Updated, v2.EndDate)
	if got := get(t, b.Store, "r1"); !subscription.Equal(got, v3) {
		t.Errorf("Get(r1) = %+v, want the later record %+v", got, v3)
	}
	if got := ids(ending(t, b.Store, base, base)); !slices.Equal(got, []string{"r2"}) {
		t.Errorf("EndingBetween on r1's old end date = %v, want [r2]", got)
	}
	if got := ids(ending(t, b.Store, v3.EndDate, v3.EndDate)); !slices.Equal(got, []string{"r1"}) {
		t.Errorf("EndingBetween on r1's new end date = %v, want [r1]", got)
	}
}

func testUpsertLarge(t *testing.T, b Backend) {
	const n = 2500
	subs := make([]subscription.Subscription, n)
	for i := range subs {
		subs[i] = sub(fmt.Sprintf("big%05d", i), base.AddDays(i%40))
	}
	for _, r := range upsert(t, b.Store, subs...) {
		if r.Change != subscription.Created {
			t.Fatalf("large batch: %v, want created", r.Change)
		}
	}
	got := ending(t, b.Store, base, base.AddDays(39))
	if len(got) != n {
		t.Fatalf("EndingBetween after a batch of %d yields %d", n, len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].EndDate.Before(got[i-1].EndDate) {
			t.Fatalf("EndingBetween out of end-date order at %d: %v after %v", i, got[i].EndDate, got[i-1].EndDate)
		}
	}
	for _, r := range upsert(t, b.Store, subs...) {
		if r.Change != subscription.Unchanged {
			t.Fatalf("large batch again: %v, want unchanged", r.Change)
		}
	}
}

func testGet(t *testing.T, b Backend) {
	full := sub("g1", base)
	sparse := subscription.Subscription{ID: "g2", EndDate: base, Status: subscription.StatusCancelled}
	unicode := sub("g3", base)
	unicode.ContractManager.Name = "Zoë Ó Séaghdha <\"&'>\r\n"
	unicode.SecondaryAdmins = nil
	upsert(t, b.Store, full, sparse, unicode)
	for _, want := range []subscription.Subscription{full, sparse, unicode} {
		if got := get(t, b.Store, want.ID); !subscription.Equal(got, want) {
			t.Errorf("Get(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
	if g := get(t, b.Store, "g2"); g.Seats != nil || g.SeatsAssigned != nil {
		t.Errorf("unknown seats came back as %v/%v, want nil", g.Seats, g.SeatsAssigned)
	}
	if _, err := b.Store.Get(ctxT(t), "nope"); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("Get(missing) err = %v, want ErrNotFound", err)
	}
	// A store that reads many at once (the notifier's batch) answers as Get.
	g, ok := b.Store.(interface {
		GetMany(ctx context.Context, ids []string) ([]subscription.Subscription, []error)
	})
	if !ok {
		return
	}
	ids := []string{"g3", "nope", "g1", "g2"}
	subs, errs := g.GetMany(ctxT(t), ids)
	if len(subs) != len(ids) || len(errs) != len(ids) {
		t.Fatalf("GetMany(%d ids) gave %d subscriptions and %d errors", len(ids), len(subs), len(errs))
	}
	for i, want := range []subscription.Subscription{unicode, {}, full, sparse} {
		if ids[i] == "nope" {
			if !errors.Is(errs[i], subscription.ErrNotFound) {
				t.Errorf("GetMany: missing id err = %v, want ErrNotFound", errs[i])
			}
			continue
		}
		if errs[i] != nil || !subscription.Equal(subs[i], want) {
			t.Errorf("GetMany: %s = %+v, %v; want %+v", ids[i], subs[i], errs[i], want)
		}
	}
}

func testEndingBetween(t *testing.T, b Backend) {
	// Inserted out of order, two on one day, some just outside the window.
	var subs []subscription.Subscription
	for i, off := range []int{5, -1, 0, 3, 4, 0, 2, 1, 6, -2} {
		subs = append(subs, sub(fmt.Sprintf("e%02d", i), base.AddDays(off)))
	}
	upsert(t, b.Store, subs...)
	from, to := base, base.AddDays(4)
	got := ending(t, b.Store, from, to)
	var want []string
	for _, s := range subs {
		if !s.EndDate.Before(from) && !s.EndDate.After(to) {
			want = append(want, s.ID)
		}
	}
	gotIDs := ids(got)
	if a, w := slices.Sorted(slices.Values(gotIDs)), slices.Sorted(slices.Values(want)); !slices.Equal(a, w) {
		t.Errorf("EndingBetween(%v, %v) = %v, want %v (both bounds inclusive)", from, to, a, w)
	}
	for i := 1; i < len(got); i++ {
		if got[i].EndDate.Before(got[i-1].EndDate) {
			t.Errorf("not ordered by end date: %s (%v) after %s (%v)", got[i].ID, got[i].EndDate, got[i-1].ID, got[i-1].EndDate)
		}
	}
	for _, g := range got {
		if g.ContractManager.Email != "cm-"+g.ID+"@example.com" {
			t.Errorf("EndingBetween yields %s without its personal data: %+v", g.ID, g.ContractManager)
		}
	}
	if got := ending(t, b.Store, base.AddDays(100), base.AddDays(200)); len(got) != 0 {
		t.Errorf("empty window yields %v", ids(got))
	}
	if got := ids(ending(t, b.Store, base.AddDays(6), base.AddDays(6))); !slices.Equal(got, []string{"e08"}) {
		t.Errorf("one-day window = %v, want [e08]", got)
	}
}

func testEndingBetweenMoves(t *testing.T, b Backend) {
	s := sub("m1", base)
	upsert(t, b.Store, s)
	s.EndDate = base.AddDays(30)
	upsert(t, b.Store, s)
	if got := ending(t, b.Store, base, base.AddDays(29)); len(got) != 0 {
		t.Errorf("old end date still yields %v", ids(got))
	}
	if got := ids(ending(t, b.Store, base, base.AddDays(30))); !slices.Equal(got, []string{"m1"}) {
		t.Errorf("new end date yields %v, want [m1]", got)
	}
}

func testEndingBetweenStops(t *testing.T, b Backend) {
	upsert(t, b.Store, sub("s1", base), sub("s2", base.AddDays(1)), sub("s3", base.AddDays(2)))
	stop := errors.New("stop here")
	calls := 0
	err := b.Store.EndingBetween(ctxT(t), base, base.AddDays(2), func(subscription.Subscription) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("EndingBetween err = %v, want fn's error", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times after returning an error, want 1", calls)
	}
}

func testEndingBetweenWindowOnly(t *testing.T, b Backend) {
	upsert(t, b.Store, sub("w-in", base), sub("w-before", base.AddDays(-1)), sub("w-after", base.AddDays(1)))
	b.Corrupt(t, "w-before")
	b.Corrupt(t, "w-after")
	if got := ids(ending(t, b.Store, base, base)); !slices.Equal(got, []string{"w-in"}) {
		t.Errorf("EndingBetween = %v, want [w-in]", got)
	}
	// The corrupt record is really read when it is in the window.
	if err := b.Store.EndingBetween(ctxT(t), base, base.AddDays(1), func(subscription.Subscription) error { return nil }); err == nil {
		t.Error("EndingBetween over a corrupt record in the window returned no error: Corrupt did not take")
	}
}

func testErase(t *testing.T, b Backend) {
	s := sub("x1", base)
	upsert(t, b.Store, s, sub("x2", base))
	if err := b.Store.Erase(ctxT(t), "x1"); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if _, err := b.Store.Get(ctxT(t), "x1"); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("Get after Erase err = %v, want ErrNotFound", err)
	}
	if got := ids(ending(t, b.Store, base, base)); !slices.Equal(got, []string{"x2"}) {
		t.Errorf("EndingBetween after Erase = %v, want [x2]", got)
	}
	if err := b.Store.Erase(ctxT(t), "x1"); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("second Erase err = %v, want ErrNotFound", err)
	}
	if err := b.Store.Erase(ctxT(t), "never"); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("Erase(missing) err = %v, want ErrNotFound", err)
	}
	res := upsert(t, b.Store, s)
	checkResult(t, "upsert after erase", res[0], subscription.Created, subscription.Date{})
	if got := get(t, b.Store, "x1"); !subscription.Equal(got, s) {
		t.Errorf("Get after re-import = %+v, want %+v", got, s)
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// find reports the dump entries that contain any of needles.
// waitErased waits until no byte the backend holds contains the data key
// or any of the personal values.
func waitErased(t *testing.T, b Backend, key []byte, personal map[string][]byte) {
	t.Helper()
	all := map[string][]byte{"data key": key}
	maps.Copy(all, personal)
	var found []string
	waitFor(t, "erasure to reach every byte the backend holds", func() bool {
		found = find(b.Dump(t), all)
		return len(found) == 0
	}, func() string { return fmt.Sprintf("still found: %v", found) })
}

func find(dump map[string][]byte, needles map[string][]byte) []string {
	var out []string
	for where, data := range dump {
		for what, n := range needles {
			if bytes.Contains(data, n) {
				out = append(out, fmt.Sprintf("%s in %s", what, where))
			}
		}
	}
	sort.Strings(out)
	return out
}

func testErasure(t *testing.T, b Backend) {
	r := randHex(t)
	s := sub("erase-me", base)
	s.CustomerName = "Marker Customer " + r // not personal: proves the dump sees the stored records
	s.ContractManager = subscription.Contact{Name: "Oldname Person " + r, Email: "old-" + r + "@example.com", Phone: "+44 1632 960" + r[:3]}
	s.PrimaryAdmin = subscription.Contact{Name: "Admin Person " + r, Email: "pa-" + r + "@example.com"}
	s.SecondaryAdmins = []string{"sa-" + r + "@example.com"}
	upsert(t, b.Store, s, sub("bystander", base))
	old := s.ContractManager
	s.ContractManager = subscription.Contact{Name: "Newname Person " + r, Email: "new-" + r + "@example.com"}
	res := upsert(t, b.Store, s)
	checkResult(t, "contract manager changed", res[0], subscription.Updated, base)

	key := b.DataKey(t, s.ID)
	if len(key) == 0 {
		t.Fatal("DataKey returned no key for a stored subscription")
	}
	personal := map[string][]byte{
		"old CM name": []byte(old.Name), "old CM email": []byte(old.Email), "old CM phone": []byte(old.Phone),
		"new CM name": []byte(s.ContractManager.Name), "new CM email": []byte(s.ContractManager.Email),
		"PA name": []byte(s.PrimaryAdmin.Name), "PA email": []byte(s.PrimaryAdmin.Email),
		"SA email": []byte(s.SecondaryAdmins[0]),
	}
	// Personal data is sealed from the start: never in clear, not even before erasure.
	if found := find(b.Dump(t), personal); len(found) > 0 {
		t.Errorf("personal data stored in clear before erasure: %v", found)
	}
	// Positive control: the dump does see what the store wrote, on disk too.
	waitFor(t, "the data key and the record to reach every place the dump reads", func() bool {
		d := b.Dump(t)
		return len(find(d, map[string][]byte{"key": key})) > 0 && len(find(d, map[string][]byte{"marker": []byte(s.CustomerName)})) > 0
	})

	if err := b.Store.Erase(ctxT(t), s.ID); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	if _, err := b.Store.Get(ctxT(t), s.ID); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("Get after Erase err = %v, want ErrNotFound", err)
	}
	if got := ids(ending(t, b.Store, base, base)); !slices.Equal(got, []string{"bystander"}) {
		t.Errorf("EndingBetween after Erase = %v, want [bystander]", got)
	}
	waitErased(t, b, key, personal)
	if got := get(t, b.Store, "bystander"); !subscription.Equal(got, sub("bystander", base)) {
		t.Errorf("erasure damaged another subscription: %+v", got)
	}
}

// waitFor polls cond until it holds, failing after 20s. Some servers write to
// disk or delete files a moment after they answer; there is no signal.
func waitFor(t *testing.T, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			for _, d := range detail {
				msg += ": " + d()
			}
			t.Fatalf("timed out waiting for %s%s", what, msg)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline: no signal exists
	}
}

// Ledger tests.

var t0 = time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)

const lease = time.Minute

func key(id string, m int) subscription.NoticeKey {
	return subscription.NoticeKey{SubscriptionID: id, EndDate: base, Milestone: m}
}

func lget(t *testing.T, l subscription.Ledger, k subscription.NoticeKey) subscription.Entry {
	t.Helper()
	e, err := l.Get(ctxT(t), k)
	if err != nil {
		t.Fatalf("ledger Get(%s): %v", k, err)
	}
	return e
}

func mustClaim(t *testing.T, l subscription.Ledger, k subscription.NoticeKey, token string, now time.Time) {
	t.Helper()
	if err := l.Claim(ctxT(t), k, token, now, lease); err != nil {
		t.Fatalf("Claim(%s, %s): %v", k, token, err)
	}
}

// confirmErr is Confirm for a call expected to fail.
func confirmErr(ctx context.Context, l subscription.Ledger, k subscription.NoticeKey, token string, e subscription.Entry) error {
	_, err := l.Confirm(ctx, k, token, e)
	return err
}

// checkConfirm confirms and checks that Confirm returns the entry as stored:
// what Get reads right after, attempts and ambiguity included.
func checkConfirm(t *testing.T, ctx context.Context, l subscription.Ledger, k subscription.NoticeKey, token string, e subscription.Entry) error {
	t.Helper()
	got, err := l.Confirm(ctx, k, token, e)
	if err != nil {
		return err
	}
	want := lget(t, l, k)
	if got.Key != want.Key || got.Outcome != want.Outcome || got.Reason != want.Reason || got.Role != want.Role ||
		!got.At.Equal(want.At) || got.Attempts != want.Attempts || got.Ambiguous != want.Ambiguous {
		t.Errorf("Confirm(%s) returned %+v, but the ledger holds %+v", k, got, want)
	}
	return nil
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

func testClaim(t *testing.T, b Backend) {
	l, ctx, k := b.Ledger, ctxT(t), key("L1", 90)
	if _, err := l.Get(ctx, k); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("Get before any claim: err = %v, want ErrNotFound", err)
	}
	mustClaim(t, l, k, "tok-a", t0)
	e := lget(t, l, k)
	if e.Key != k || e.Outcome != "" || e.Attempts != 1 || e.Ambiguous {
		t.Errorf("after claim: %+v, want key %s, no outcome, 1 attempt, not ambiguous", e, k)
	}
	wantErr(t, "claim by another token while the lease is live", l.Claim(ctx, k, "tok-b", t0.Add(lease-time.Millisecond), lease), subscription.ErrClaimed)
	// The same token may claim again (a retried call): the lease is renewed, no new attempt.
	mustClaim(t, l, k, "tok-a", t0.Add(30*time.Second))
	wantErr(t, "claim by another token within the renewed lease", l.Claim(ctx, k, "tok-b", t0.Add(lease+time.Second), lease), subscription.ErrClaimed)
	if e := lget(t, l, k); e.Attempts != 1 || e.Ambiguous {
		t.Errorf("after a same-token re-claim: %+v, want 1 attempt, not ambiguous", e)
	}
	at := t0.Add(40 * time.Second)
	if err := checkConfirm(t, ctx, l, k, "tok-a", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: at}); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	e = lget(t, l, k)
	if e.Outcome != subscription.OutcomeSent || e.Role != subscription.RoleContractManager || !e.At.Equal(at) || e.Attempts != 1 || e.Ambiguous {
		t.Errorf("after confirm: %+v", e)
	}
	wantErr(t, "claim after sent", l.Claim(ctx, k, "tok-c", t0.Add(48*time.Hour), lease), subscription.ErrAlreadySent)
	wantErr(t, "re-claim by the confirming token", l.Claim(ctx, k, "tok-a", t0.Add(time.Hour), lease), subscription.ErrAlreadySent)
	wantErr(t, "second confirm, of another outcome", confirmErr(ctx, l, k, "tok-a", subscription.Entry{Outcome: subscription.OutcomeFailed, At: at}), subscription.ErrLostClaim)
	wantErr(t, "release after confirm", l.Release(ctx, k, "tok-a", false, ""), subscription.ErrLostClaim)
	if e := lget(t, l, k); e.Attempts != 1 || e.Outcome != subscription.OutcomeSent {
		t.Errorf("refused calls changed the entry: %+v", e)
	}
	// A plain release frees the notice at once for another token.
	k2 := key("L1", 45)
	mustClaim(t, l, k2, "tok-a", t0)
	if err := l.Release(ctx, k2, "tok-a", false, ""); err != nil {
		t.Fatalf("Release: %v", err)
	}
	mustClaim(t, l, k2, "tok-b", t0.Add(time.Second))
	if e := lget(t, l, k2); e.Attempts != 2 || e.Ambiguous || e.Outcome != "" {
		t.Errorf("after release and a new claim: %+v, want 2 attempts, not ambiguous", e)
	}
}

func testTakeover(t *testing.T, b Backend) {
	l, ctx, k := b.Ledger, ctxT(t), key("T1", 30)
	mustClaim(t, l, k, "dead", t0)
	if err := l.Begin(ctx, k, "dead", t0, lease); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	// At exactly the lease's end the claim has run out.
	mustClaim(t, l, k, "alive", t0.Add(lease))
	e := lget(t, l, k)
	if !e.Ambiguous || e.Attempts != 2 {
		t.Errorf("after takeover: %+v, want ambiguous and 2 attempts", e)
	}
	wantErr(t, "confirm by the old holder", confirmErr(ctx, l, k, "dead", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}), subscription.ErrLostClaim)
	wantErr(t, "release by the old holder", l.Release(ctx, k, "dead", false, ""), subscription.ErrLostClaim)
	wantErr(t, "claim by the old holder", l.Claim(ctx, k, "dead", t0.Add(lease+time.Second), lease), subscription.ErrClaimed)
	if err := checkConfirm(t, ctx, l, k, "alive", subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: t0.Add(lease)}); err != nil {
		t.Fatalf("Confirm by the new holder: %v", err)
	}
	if e := lget(t, l, k); !e.Ambiguous || e.Outcome != subscription.OutcomeSent || e.Attempts != 2 {
		t.Errorf("after confirm: %+v, want sent, still ambiguous, 2 attempts", e)
	}
}

// testTakeoverBeforeBegin: a holder that died before its send began cannot
// have sent, so taking its lapsed claim over flags nothing; nor does a
// takeover after a holder released a begun send as not sent.
func testTakeoverBeforeBegin(t *testing.T, b Backend) {
	l, ctx, k := b.Ledger, ctxT(t), key("T2", 30)
	mustClaim(t, l, k, "dead", t0)
	mustClaim(t, l, k, "alive", t0.Add(lease))
	if e := lget(t, l, k); e.Ambiguous || e.Attempts != 2 {
		t.Errorf("takeover of a claim that never began: %+v, want 2 attempts, not ambiguous", e)
	}
	if err := l.Begin(ctx, k, "alive", t0.Add(lease), lease); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	if err := l.Release(ctx, k, "alive", false, ""); err != nil {
		t.Fatalf("Release: %v", err)
	}
	mustClaim(t, l, k, "third", t0.Add(2*lease))
	mustClaim(t, l, k, "fourth", t0.Add(4*lease))
	if e := lget(t, l, k); e.Ambiguous || e.Attempts != 4 {
		t.Errorf("takeover after a begun send was released as not sent: %+v, want 4 attempts, not ambiguous", e)
	}
	// The new holder's own mark starts clear: a takeover of it flags only
	// once it has begun.
	if err := l.Begin(ctx, k, "fourth", t0.Add(4*lease), lease); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	mustClaim(t, l, k, "fifth", t0.Add(6*lease))
	if e := lget(t, l, k); !e.Ambiguous {
		t.Errorf("takeover of a begun send: %+v, want ambiguous", e)
	}
}

// testTwoProcesses: what one process wrote decides for another. A takeover
// by a peer after the lease ran out leaves the first holder unable to renew,
// begin, release or confirm, whatever it last wrote itself; a notice the peer
// sent cannot be claimed again.
func testTwoProcesses(t *testing.T, b Backend) {
	a, p, ctx, k := b.Ledger, b.Peer, ctxT(t), key("P1", 30)
	mustClaim(t, a, k, "a", t0)
	if err := a.Begin(ctx, k, "a", t0, lease); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	wantErr(t, "peer's claim within the lease", p.Claim(ctx, k, "p", t0.Add(time.Second), lease), subscription.ErrClaimed)
	mustClaim(t, p, k, "p", t0.Add(lease))
	wantErr(t, "renew after the peer took over", a.Renew(ctx, k, "a", t0.Add(lease), lease), subscription.ErrLostClaim)
	wantErr(t, "begin after the peer took over", a.Begin(ctx, k, "a", t0.Add(lease), lease), subscription.ErrLostClaim)
	wantErr(t, "release after the peer took over", a.Release(ctx, k, "a", false, ""), subscription.ErrLostClaim)
	wantErr(t, "confirm after the peer took over", confirmErr(ctx, a, k, "a", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}), subscription.ErrLostClaim)
	if err := checkConfirm(t, ctx, p, k, "p", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0.Add(lease)}); err != nil {
		t.Fatalf("peer's Confirm: %v", err)
	}
	wantErr(t, "claim of a notice the peer sent", a.Claim(ctx, k, "a2", t0.Add(2*lease), lease), subscription.ErrAlreadySent)
	if e := lget(t, a, k); !e.Ambiguous || e.Attempts != 2 || e.Outcome != subscription.OutcomeSent {
		t.Errorf("after the peer's takeover and send: %+v, want sent, ambiguous, 2 attempts", e)
	}
	// A claim the peer holds and renews stays its own for this process too.
	k2 := key("P1", 45)
	mustClaim(t, p, k2, "p", t0)
	if err := p.Renew(ctx, k2, "p", t0.Add(lease-time.Second), lease); err != nil {
		t.Fatalf("peer's Renew: %v", err)
	}
	wantErr(t, "claim within the peer's renewed lease", a.Claim(ctx, k2, "a", t0.Add(lease+time.Second), lease), subscription.ErrClaimed)
}

// testRenewBegin: Renew and Begin extend only the holder's own lease.
func testRenewBegin(t *testing.T, b Backend) {
	l, ctx, k := b.Ledger, ctxT(t), key("N1", 45)
	wantErr(t, "renew of an unclaimed notice", l.Renew(ctx, k, "a", t0, lease), subscription.ErrLostClaim)
	mustClaim(t, l, k, "a", t0)
	// Renewed just before it runs out, the lease holds past its first end.
	if err := l.Renew(ctx, k, "a", t0.Add(lease-time.Second), lease); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	wantErr(t, "claim within the renewed lease", l.Claim(ctx, k, "b", t0.Add(lease+time.Second), lease), subscription.ErrClaimed)
	if err := l.Begin(ctx, k, "a", t0.Add(2*lease-2*time.Second), lease); err != nil {
		t.Fatalf("Begin: %v", err)
	}
	wantErr(t, "claim within the lease Begin renewed", l.Claim(ctx, k, "b", t0.Add(2*lease), lease), subscription.ErrClaimed)
	wantErr(t, "renew by another token", l.Renew(ctx, k, "b", t0, lease), subscription.ErrLostClaim)
	wantErr(t, "begin by another token", l.Begin(ctx, k, "b", t0, lease), subscription.ErrLostClaim)
	if e := lget(t, l, k); e.Attempts != 1 || e.Ambiguous {
		t.Errorf("after renewals: %+v, want 1 attempt, not ambiguous", e)
	}
	// Once taken over, the old holder can neither renew nor begin.
	mustClaim(t, l, k, "b", t0.Add(3*lease))
	wantErr(t, "renew by the lapsed holder", l.Renew(ctx, k, "a", t0.Add(3*lease), lease), subscription.ErrLostClaim)
	wantErr(t, "begin by the lapsed holder", l.Begin(ctx, k, "a", t0.Add(3*lease), lease), subscription.ErrLostClaim)
	if err := checkConfirm(t, ctx, l, k, "b", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0.Add(3 * lease)}); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	wantErr(t, "renew after confirm", l.Renew(ctx, k, "b", t0.Add(3*lease), lease), subscription.ErrLostClaim)
}

func testReleaseAmbiguous(t *testing.T, b Backend) {
	l, ctx, k := b.Ledger, ctxT(t), key("R1", 90)
	mustClaim(t, l, k, "a", t0)
	if err := l.Release(ctx, k, "a", true, ""); err != nil {
		t.Fatalf("Release(ambiguous): %v", err)
	}
	if e := lget(t, l, k); !e.Ambiguous || e.Outcome != "" {
		t.Errorf("after an ambiguous release: %+v, want ambiguous, no outcome", e)
	}
	mustClaim(t, l, k, "b", t0.Add(time.Second))
	if err := l.Release(ctx, k, "b", false, "421 4.7.0 try again later"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if e := lget(t, l, k); e.Reason != "421 4.7.0 try again later" || e.Outcome != "" {
		t.Errorf("after a release with a reason: %+v, want the reason kept, no outcome", e)
	}
	mustClaim(t, l, k, "c", t0.Add(2*time.Second))
	if err := checkConfirm(t, ctx, l, k, "c", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0.Add(3 * time.Second)}); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	if e := lget(t, l, k); !e.Ambiguous || e.Outcome != subscription.OutcomeSent || e.Attempts != 3 || e.Reason != "" {
		t.Errorf("after confirm: %+v, want sent, ambiguous kept, 3 attempts, the retry's reason gone", e)
	}
	wantErr(t, "release of an unknown notice", l.Release(ctx, key("R1", 45), "a", false, ""), subscription.ErrLostClaim)
	// Confirm can mark the attempt ambiguous itself.
	k2 := key("R2", 90)
	mustClaim(t, l, k2, "a", t0)
	if err := checkConfirm(t, ctx, l, k2, "a", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0, Ambiguous: true}); err != nil {
		t.Fatalf("Confirm(ambiguous): %v", err)
	}
	if e := lget(t, l, k2); !e.Ambiguous {
		t.Errorf("Confirm with Ambiguous set: %+v, want ambiguous", e)
	}
}

func testConfirmWrongToken(t *testing.T, b Backend) {
	l, ctx, k := b.Ledger, ctxT(t), key("C1", 90)
	wantErr(t, "confirm of an unknown notice", confirmErr(ctx, l, k, "x", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}), subscription.ErrLostClaim)
	mustClaim(t, l, k, "right", t0)
	wantErr(t, "confirm with a wrong token", confirmErr(ctx, l, k, "wrong", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}), subscription.ErrLostClaim)
	wantErr(t, "release with a wrong token", l.Release(ctx, k, "wrong", true, ""), subscription.ErrLostClaim)
	if e := lget(t, l, k); e.Outcome != "" || e.Ambiguous {
		t.Errorf("a wrong token changed the entry: %+v", e)
	}
	if err := checkConfirm(t, ctx, l, k, "right", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}); err != nil {
		t.Errorf("Confirm with the right token: %v", err)
	}
}

// testConfirmRepeated: a Confirm repeated by the token that confirmed (a
// retry after its reply was lost) returns the stored entry and changes
// nothing; any other token, or a later claim's, is still refused.
func testConfirmRepeated(t *testing.T, b Backend) {
	l, ctx, k := b.Ledger, ctxT(t), key("R1", 90)
	mustClaim(t, l, k, "first", t0)
	sent := subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: t0}
	if err := checkConfirm(t, ctx, l, k, "first", sent); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	before := lget(t, l, k)
	again, err := l.Confirm(ctx, k, "first", sent)
	if err != nil {
		t.Fatalf("Confirm repeated by the token that confirmed: %v", err)
	}
	if again.Outcome != before.Outcome || again.Attempts != before.Attempts || !again.At.Equal(before.At) || again.Ambiguous != before.Ambiguous {
		t.Errorf("repeated Confirm returned %+v, want the stored %+v", again, before)
	}
	if after := lget(t, l, k); after.Outcome != before.Outcome || !after.At.Equal(before.At) || after.Attempts != before.Attempts {
		t.Errorf("repeated Confirm changed the entry: %+v, was %+v", after, before)
	}
	wantErr(t, "confirm by another token after the first confirmed", confirmErr(ctx, l, k, "other", sent), subscription.ErrLostClaim)
	// A repeat that would record another outcome is not a repeat.
	failed := subscription.Entry{Outcome: subscription.OutcomeFailed, Reason: "x", At: t0}
	wantErr(t, "confirm of another outcome by the token that confirmed", confirmErr(ctx, l, k, "first", failed), subscription.ErrLostClaim)

	// A non-sent outcome can be claimed again; the old token's repeat must
	// not then pass for the new claim.
	k2 := key("R2", 90)
	mustClaim(t, l, k2, "one", t0)
	skipped := subscription.Entry{Outcome: subscription.OutcomeSkipped, Reason: "renewal in progress", At: t0}
	if err := checkConfirm(t, ctx, l, k2, "one", skipped); err != nil {
		t.Fatalf("Confirm skipped: %v", err)
	}
	mustClaim(t, l, k2, "two", t0.Add(time.Hour))
	wantErr(t, "repeat by an earlier claim's token while a new claim holds the notice", confirmErr(ctx, l, k2, "one", skipped), subscription.ErrLostClaim)
}

func testNonSent(t *testing.T, b Backend) {
	l, ctx := b.Ledger, ctxT(t)
	for i, o := range []subscription.Outcome{subscription.OutcomeSkipped, subscription.OutcomeFailed, subscription.OutcomeUndeliverable} {
		k := key("N1", 30+i)
		mustClaim(t, l, k, "first", t0)
		at := t0.Add(time.Second)
		if err := checkConfirm(t, ctx, l, k, "first", subscription.Entry{Outcome: o, Reason: "because " + string(o), Role: subscription.RoleContractManager, At: at}); err != nil {
			t.Fatalf("Confirm(%s): %v", o, err)
		}
		e := lget(t, l, k)
		if e.Outcome != o || e.Reason != "because "+string(o) || !e.At.Equal(at) || e.Role != subscription.RoleContractManager {
			t.Errorf("after %s: %+v", o, e)
		}
		sent, err := l.Sent(ctx, []subscription.NoticeKey{k})
		if err != nil {
			t.Fatalf("Sent: %v", err)
		}
		if sent[k] {
			t.Errorf("Sent reports a %s notice as sent", o)
		}
		// Not final: a later pass may claim it at once, with another token.
		mustClaim(t, l, k, "second", t0.Add(2*time.Second))
		if e := lget(t, l, k); e.Attempts != 2 || e.Ambiguous {
			t.Errorf("re-claim after %s: %+v, want 2 attempts, not ambiguous", o, e)
		}
		if err := checkConfirm(t, ctx, l, k, "second", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0.Add(3 * time.Second)}); err != nil {
			t.Fatalf("Confirm(sent) after %s: %v", o, err)
		}
		wantErr(t, "claim after sent", l.Claim(ctx, k, "third", t0.Add(time.Hour), lease), subscription.ErrAlreadySent)
	}
}

func testSentGetList(t *testing.T, b Backend) {
	l, ctx := b.Ledger, ctxT(t)
	later := subscription.NoticeKey{SubscriptionID: "S1", EndDate: base.AddDays(365), Milestone: 90}
	keys := []subscription.NoticeKey{key("S1", 90), later, key("S1", 9), key("S1", 45), key("S10", 30), key("S", 30), key("S2", 30)}
	for i, k := range keys {
		tok := fmt.Sprintf("t%d", i)
		mustClaim(t, l, k, tok, t0)
		if i%2 == 0 {
			if err := checkConfirm(t, ctx, l, k, tok, subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: t0}); err != nil {
				t.Fatal(err)
			}
		}
	}
	unknown := key("nobody", 30)
	sent, err := l.Sent(ctx, append(slices.Clone(keys), unknown))
	if err != nil {
		t.Fatalf("Sent: %v", err)
	}
	for i, k := range keys {
		if got, want := sent[k], i%2 == 0; got != want {
			t.Errorf("Sent[%s] = %v, want %v", k, got, want)
		}
	}
	if sent[unknown] {
		t.Errorf("Sent reports an unknown key as sent")
	}
	if got, err := l.Sent(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Sent(nil) = %v, %v", got, err)
	}
	list, err := l.List(ctx, "S1")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []subscription.NoticeKey
	for _, e := range list {
		got = append(got, e.Key)
	}
	want := []subscription.NoticeKey{key("S1", 9), key("S1", 45), key("S1", 90), later}
	if !slices.Equal(got, want) {
		t.Errorf("List(S1) = %v, want %v (ordered by key)", got, want)
	}
	if list[1].Outcome != "" || list[2].Outcome != subscription.OutcomeSent {
		t.Errorf("List entries carry the wrong outcomes: %+v", list)
	}
	if list, err := l.List(ctx, "nobody"); err != nil || len(list) != 0 {
		t.Errorf("List(unknown) = %v, %v, want empty", list, err)
	}
}

func testConcurrentClaim(t *testing.T, b Backend) {
	const n = 16
	k := key("race", 90)
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = b.Ledger.Claim(context.Background(), k, fmt.Sprintf("worker-%d", i), t0, lease)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, subscription.ErrClaimed):
		default:
			t.Errorf("worker %d: %v, want nil or ErrClaimed", i, err)
		}
	}
	if wins != 1 {
		t.Errorf("%d of %d racing claims won, want exactly 1", wins, n)
	}
	if e := lget(t, b.Ledger, k); e.Attempts != 1 {
		t.Errorf("attempts after the race = %d, want 1", e.Attempts)
	}
}

// testUpsertKeepsUsage: a row without seat usage (an import, an edit) keeps
// the counts that the last usage import stored; a row with usage replaces
// them; the vendor fields round-trip.
func testUpsertKeepsUsage(t *testing.T, b Backend) {
	s := sub("u1", base)
	s.ContractNumber, s.Team, s.QuoteNumber, s.QuoteURL = "CN-1", "team-a", "Q-9", "https://quotes.example/q/9"
	s.AutorenewDate, s.QuoteExpiry = base.AddDays(-1), base.AddDays(-30)
	upsert(t, b.Store, s)
	withUsage := s
	withUsage.Usage = &subscription.SeatUsage{AsOf: base.AddDays(-60), Users: 10, Unused30: 5, Unused60: 3, Unused90: 1}
	checkResult(t, "usage set", upsert(t, b.Store, withUsage)[0], subscription.Updated, base)
	if got := get(t, b.Store, s.ID); !subscription.Equal(got, withUsage) {
		t.Fatalf("Get after the usage = %+v, want %+v", got, withUsage)
	}
	// The same row again, without usage: unchanged, and the usage stays.
	checkResult(t, "same row without usage", upsert(t, b.Store, s)[0], subscription.Unchanged, base)
	renamed := s
	renamed.CustomerName = "Renamed Ltd"
	checkResult(t, "renamed without usage", upsert(t, b.Store, renamed)[0], subscription.Updated, base)
	want := renamed
	want.Usage = withUsage.Usage
	if got := get(t, b.Store, s.ID); !subscription.Equal(got, want) {
		t.Errorf("Get after an upsert without usage = %+v, want the usage kept: %+v", got, want)
	}
	// Repeated in one batch: each row against the one before.
	newer := renamed
	newer.Usage = &subscription.SeatUsage{AsOf: base.AddDays(-30), Users: 10, Unused30: 2}
	res := upsert(t, b.Store, newer, renamed)
	checkResult(t, "new usage", res[0], subscription.Updated, base)
	checkResult(t, "then a row without usage", res[1], subscription.Unchanged, base)
	if got := get(t, b.Store, s.ID); got.Usage == nil || *got.Usage != *newer.Usage {
		t.Errorf("usage after a batch = %+v, want %+v", got.Usage, newer.Usage)
	}
}

// testUsageImportKeepsNoIdentity: a usage export of 10,000 user rows
// becomes counts per subscription, and no byte the backend holds names a
// user: the export's names, addresses and ids appear nowhere, not even in
// the files on disk.
func testUsageImportKeepsNoIdentity(t *testing.T, b Backend) {
	r := randHex(t)
	asOf := base.AddDays(-60)
	const subsN, users = 40, 10000
	var subs []subscription.Subscription
	for i := range subsN {
		s := sub(fmt.Sprintf("use-%02d", i), base)
		s.CustomerName = "Usage Customer " + r // not personal: the positive control
		s.ContractNumber = fmt.Sprintf("CN-%d", i/4)
		s.Product = fmt.Sprintf("Product %d", i%4)
		s.Seats = intp(users / subsN)
		subs = append(subs, s)
	}
	upsert(t, b.Store, subs...)

	var csv bytes.Buffer
	csv.WriteString("Email,First Name,Last Name,Autodesk ID,Contract Number,Product Name,Subscription ID,Last Accessed,Days Inactive\r\n")
	want := map[string]*subscription.SeatUsage{}
	for i := range users {
		s := subs[i%subsN]
		u := want[s.ID]
		if u == nil {
			u = &subscription.SeatUsage{AsOf: asOf}
			want[s.ID] = u
		}
		idle := (i * 7) % 120 // 0 to 119 days
		u.Users++
		if idle >= 30 {
			u.Unused30++
		}
		if idle >= 60 {
			u.Unused60++
		}
		if idle >= 90 {
			u.Unused90++
		}
		id, contract, product, last, days := s.ID, "", "", asOf.AddDays(-idle).String(), ""
		switch i % 3 {
		case 1: // by contract and product, as the vendor's export names them
			id, contract, product = "", s.ContractNumber, strings.ToUpper(s.Product)
		case 2: // the vendor's days inactive instead of a date
			last, days = "", fmt.Sprint(idle)
		}
		fmt.Fprintf(&csv, "user%05d.%s@corp.example,Firstname%s%05d,Lastname%s,ADSK%s%05d,%s,%s,%s,%s,%s\r\n",
			i, r, r, i, r, r, i, contract, product, id, last, days)
	}
	rep, err := importer.ImportUsage(ctxT(t), &csv, importer.UsageOptions{Store: b.Store, AsOf: asOf})
	if err != nil {
		t.Fatalf("ImportUsage: %v", err)
	}
	if rep.Rows != users || rep.Counted != users || rep.Rejected != 0 || rep.Subscriptions != subsN || rep.Updated != subsN {
		t.Errorf("report: %s", rep.Text())
	}
	if len(rep.UnknownColumns) != 0 {
		t.Errorf("the users' columns were reported as unknown: %v", rep.UnknownColumns)
	}
	for _, s := range subs {
		got := get(t, b.Store, s.ID)
		if got.Usage == nil || *got.Usage != *want[s.ID] {
			t.Errorf("%s: usage %+v, want %+v", s.ID, got.Usage, want[s.ID])
		}
	}
	if txt := rep.Text(); strings.Contains(txt, r) {
		t.Errorf("the report names users:\n%s", txt)
	}
	// Every user's name, address and id carries r; the subscriptions'
	// customer name too, which shows the dump sees the records.
	waitFor(t, "the records to reach every place the dump reads", func() bool {
		return len(find(b.Dump(t), map[string][]byte{"marker": []byte("Usage Customer " + r)})) > 0
	})
	needles := map[string][]byte{
		"a user's address": []byte("." + r + "@corp.example"), "a user's first name": []byte("Firstname" + r),
		"a user's last name": []byte("Lastname" + r), "a user's Autodesk id": []byte("ADSK" + r),
	}
	dump := b.Dump(t)
	for where, data := range dump {
		data = bytes.ReplaceAll(data, []byte("Usage Customer "+r), nil)
		if bytes.Contains(data, []byte(r)) {
			t.Errorf("the export's random marker is stored in %s", where)
		}
	}
	if found := find(dump, needles); len(found) > 0 {
		t.Errorf("user identity stored: %v", found)
	}
}

// testClaimConfirmMany: ClaimMany and ConfirmMany answer for each notice of
// a batch what Claim and Confirm would have, and the entries they leave are
// what Get reads.
func testClaimConfirmMany(t *testing.T, b Backend) {
	l, p, ctx := b.Ledger, b.Peer, ctxT(t)
	fresh, held, sent, again, bad := key("M1", 90), key("M1", 45), key("M1", 30), key("M2", 30), key("M2", 45)
	mustClaim(t, p, held, "peer", t0)
	mustClaim(t, p, sent, "peer", t0)
	if _, err := p.Confirm(ctx, sent, "peer", subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, l, again, "a", t0)
	errs := l.ClaimMany(ctx, []subscription.Claim{
		{Key: fresh, Token: "a"}, {Key: held, Token: "a"}, {Key: sent, Token: "a"}, {Key: again, Token: "a"}, {Key: bad, Token: ""},
	}, t0.Add(time.Second), lease)
	if len(errs) != 5 {
		t.Fatalf("ClaimMany returned %d errors for 5 claims", len(errs))
	}
	if errs[0] != nil || errs[3] != nil {
		t.Errorf("ClaimMany of a fresh notice and a re-claim by its holder: %v, %v; want both nil", errs[0], errs[3])
	}
	wantErr(t, "ClaimMany of a notice another holds", errs[1], subscription.ErrClaimed)
	wantErr(t, "ClaimMany of a sent notice", errs[2], subscription.ErrAlreadySent)
	if errs[4] == nil {
		t.Error("ClaimMany with an empty token: no error")
	}
	if e := lget(t, l, fresh); e.Attempts != 1 || e.Outcome != "" || e.Ambiguous {
		t.Errorf("after ClaimMany: %+v, want 1 attempt, no outcome", e)
	}
	if e := lget(t, l, again); e.Attempts != 1 {
		t.Errorf("a re-claim by the holder counted an attempt: %+v", e)
	}
	wantErr(t, "Claim by another token of a notice ClaimMany took", p.Claim(ctx, fresh, "peer", t0.Add(2*time.Second), lease), subscription.ErrClaimed)

	at := t0.Add(3 * time.Second)
	cs := []subscription.Confirmation{
		{Key: fresh, Token: "a", Entry: subscription.Entry{Outcome: subscription.OutcomeSent, Role: subscription.RoleContractManager, At: at}},
		{Key: again, Token: "a", Entry: subscription.Entry{Outcome: subscription.OutcomeSkipped, Reason: "renewed", At: at, Ambiguous: true}},
		{Key: held, Token: "a", Entry: subscription.Entry{Outcome: subscription.OutcomeSent, At: at}},
		{Key: bad, Token: "a", Entry: subscription.Entry{At: at}},
	}
	entries, cerrs := l.ConfirmMany(ctx, cs)
	if len(entries) != 4 || len(cerrs) != 4 {
		t.Fatalf("ConfirmMany returned %d entries and %d errors for 4", len(entries), len(cerrs))
	}
	for i, k := range []subscription.NoticeKey{fresh, again} {
		if cerrs[i] != nil {
			t.Errorf("ConfirmMany of %s: %v", k, cerrs[i])
			continue
		}
		want := lget(t, l, k)
		got := entries[i]
		if got.Key != want.Key || got.Outcome != want.Outcome || got.Reason != want.Reason || got.Role != want.Role ||
			!got.At.Equal(want.At) || got.Attempts != want.Attempts || got.Ambiguous != want.Ambiguous {
			t.Errorf("ConfirmMany(%s) returned %+v, but the ledger holds %+v", k, got, want)
		}
	}
	if e := lget(t, l, again); e.Outcome != subscription.OutcomeSkipped || !e.Ambiguous || e.Reason != "renewed" {
		t.Errorf("after ConfirmMany: %+v, want skipped, ambiguous, reason renewed", e)
	}
	wantErr(t, "ConfirmMany of a notice another holds", cerrs[2], subscription.ErrLostClaim)
	if cerrs[3] == nil {
		t.Error("ConfirmMany with no outcome: no error")
	}
	wantErr(t, "Claim after ConfirmMany recorded it sent", p.Claim(ctx, fresh, "peer", t0.Add(time.Hour), lease), subscription.ErrAlreadySent)
	// Repeated by the token that confirmed (a lost reply): the entry as stored.
	entries, cerrs = l.ConfirmMany(ctx, cs[:1])
	if cerrs[0] != nil || entries[0].Outcome != subscription.OutcomeSent || entries[0].Attempts != 1 {
		t.Errorf("repeated ConfirmMany: %+v, %v; want the sent entry", entries[0], cerrs[0])
	}
	if entries, errs := l.ConfirmMany(ctx, nil); len(entries) != 0 || len(errs) != 0 {
		t.Errorf("ConfirmMany of nothing: %v, %v", entries, errs)
	}
	if errs := l.ClaimMany(ctx, nil, t0, lease); len(errs) != 0 {
		t.Errorf("ClaimMany of nothing: %v", errs)
	}
}

// testManyAcrossProcesses: batches decide on what the other process wrote,
// not on what this one remembers: a takeover by a peer after the lease ran
// out makes the first holder's ConfirmMany fail with ErrLostClaim, and a
// lapsed claim taken over by ClaimMany after Begin is flagged ambiguous.
func testManyAcrossProcesses(t *testing.T, b Backend) {
	a, p, ctx := b.Ledger, b.Peer, ctxT(t)
	k1, k2 := key("X1", 30), key("X1", 45)
	if errs := a.ClaimMany(ctx, []subscription.Claim{{Key: k1, Token: "a"}, {Key: k2, Token: "a"}}, t0, lease); errs[0] != nil || errs[1] != nil {
		t.Fatalf("ClaimMany: %v", errs)
	}
	if err := a.Begin(ctx, k1, "a", t0, lease); err != nil {
		t.Fatal(err)
	}
	if errs := p.ClaimMany(ctx, []subscription.Claim{{Key: k1, Token: "p"}}, t0.Add(lease), lease); errs[0] != nil {
		t.Fatalf("peer's ClaimMany over a lapsed lease: %v", errs[0])
	}
	_, errs := a.ConfirmMany(ctx, []subscription.Confirmation{
		{Key: k1, Token: "a", Entry: subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}},
		{Key: k2, Token: "a", Entry: subscription.Entry{Outcome: subscription.OutcomeSent, At: t0}},
	})
	wantErr(t, "ConfirmMany after the peer took over", errs[0], subscription.ErrLostClaim)
	if errs[1] != nil {
		t.Errorf("ConfirmMany of the claim still held: %v", errs[1])
	}
	entries, errs := p.ConfirmMany(ctx, []subscription.Confirmation{{Key: k1, Token: "p", Entry: subscription.Entry{Outcome: subscription.OutcomeSent, At: t0.Add(lease)}}})
	if errs[0] != nil || !entries[0].Ambiguous || entries[0].Attempts != 2 {
		t.Errorf("peer's ConfirmMany after a takeover of a begun send: %+v, %v; want ambiguous, 2 attempts", entries[0], errs[0])
	}
}
