package kvstore_test

import (
	"context"
	"testing"

	"renewals/pkg/kvstore"
	"renewals/pkg/storetest"
	"renewals/pkg/subscription"
)

// A re-import settles its unchanged rows from reads without headers (see
// unchangedRows) and sends every row that those cannot settle to the full
// read, which must then give the result it always gave: a row whose data
// key is gone (an erasure cut short) in the middle of a run of keys, which
// shifts the answers after it onto other rows; a row whose record was
// purged; a row whose record does not decode; changed rows.
func TestReimportSettlesOnlyWhatItCan(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	s, _, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	subs := storetest.BenchSubs(40, 0)
	res, err := s.Upsert(ctx, subs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Change != subscription.Created {
			t.Fatalf("row %d: %v, want created", i, r.Change)
		}
	}
	// A batch of new rows sends the next batch straight to the full read;
	// one of unchanged rows brings the cheap comparison back.
	for range 2 {
		if res, err = s.Upsert(ctx, subs); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range res {
		if r.Change != subscription.Unchanged {
			t.Fatalf("row %d again: %v, want unchanged", i, r.Change)
		}
	}
	keys, err := js.Stream(ctx, kvstore.KeysStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.SecureDeleteMsg(ctx, kvstore.KeySeqOf(t, s, subs[30].ID)); err != nil {
		t.Fatal(err)
	}
	bucket, err := js.KeyValue(ctx, kvstore.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := bucket.Purge(ctx, subs[9].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := bucket.Put(ctx, subs[12].ID, []byte("not a record")); err != nil {
		t.Fatal(err)
	}
	next := append([]subscription.Subscription(nil), subs...)
	next[20].ContractManager.Email = "someone-else@example.com"
	next[21].EndDate = next[21].EndDate.AddDays(365)
	want := map[int]subscription.Change{30: subscription.Created, 9: subscription.Created, 12: subscription.Created, 20: subscription.Updated, 21: subscription.Updated}
	res, _ = upsertWant(t, s, next, want)
	for i, r := range res {
		if prev := subs[i].EndDate; r.Change != subscription.Created && r.PreviousEndDate != prev {
			t.Errorf("row %d changed: previous end date %v, want %v", i, r.PreviousEndDate, prev)
		}
	}
	for _, x := range next {
		got, err := s.Get(ctx, x.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !subscription.Equal(got, x) {
			t.Errorf("Get(%s) = %+v, want %+v", x.ID, got, x)
		}
	}
	upsertWant(t, s, next, nil) // a third time: all unchanged
}

// A re-import reads the records of a run of rows by sequence, from the
// sequence of the run's first record (see settleRuns): rows in another
// order than they were written in pair each run's records with other rows,
// and a record rewritten since sits elsewhere, shifting the rest of its
// run. Each row must still get the result it always got.
func TestReimportInAnotherOrder(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	s, _, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	subs := storetest.BenchSubs(200, 0)
	if _, err := s.Upsert(ctx, subs); err != nil {
		t.Fatal(err)
	}
	// The batch after a batch of new rows goes to the full read; this one
	// brings the cheap comparison back. Upserts of one row go one at a
	// time, and leave it so.
	if _, err := s.Upsert(ctx, subs[:2]); err != nil {
		t.Fatal(err)
	}
	changed := subs[70]
	changed.EndDate = changed.EndDate.AddDays(30)
	if _, err := s.Upsert(ctx, []subscription.Subscription{changed}); err != nil {
		t.Fatal(err)
	}
	orders := map[string]func(i int) int{
		"reversed": func(i int) int { return len(subs) - 1 - i },
		"rotated":  func(i int) int { return (i + 45) % len(subs) },
		"strided":  func(i int) int { return (i * 7) % len(subs) },
	}
	for name, order := range orders {
		next := make([]subscription.Subscription, len(subs))
		for i := range next {
			next[i] = subs[order(i)]
		}
		before := kvstore.SettledFromMemory(s)
		res, err := s.Upsert(ctx, next)
		if err != nil {
			t.Fatal(err)
		}
		// The single row's upsert below (and above, the first time) is a
		// write the store's memory of rows does not account for: the rows
		// are read back, which is what this test is about.
		if n := kvstore.SettledFromMemory(s) - before; n != 0 {
			t.Fatalf("%s: %d rows settled from memory, not read", name, n)
		}
		for i, r := range res {
			x, w := next[i], subscription.Unchanged
			prev := x.EndDate
			if x.ID == changed.ID {
				w, prev = subscription.Updated, changed.EndDate
			}
			if r.Change != w || r.PreviousEndDate != prev {
				t.Errorf("%s: row %d (%s): %v from %v, want %v from %v", name, i, x.ID, r.Change, r.PreviousEndDate, w, prev)
			}
		}
		if _, err := s.Upsert(ctx, []subscription.Subscription{changed}); err != nil {
			t.Fatal(err)
		}
	}
}
