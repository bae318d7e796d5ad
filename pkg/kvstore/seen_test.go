package kvstore_test

import (
	"context"
	"sync"
	"testing"

	"renewals/pkg/kvstore"
	"renewals/pkg/storetest"
	"renewals/pkg/subscription"
)

// upsertWant upserts subs into s and checks each row's change: want by row,
// Unchanged for the rest. It returns how many rows the store settled from
// its memory in this call.
func upsertWant(t *testing.T, s *kvstore.Store, subs []subscription.Subscription, want map[int]subscription.Change) int {
	t.Helper()
	before := kvstore.SettledFromMemory(s)
	res, err := s.Upsert(context.Background(), subs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		w, ok := want[i]
		if !ok {
			w = subscription.Unchanged
		}
		if r.Change != w {
			t.Errorf("row %d: %v, want %v", i, r.Change, w)
		}
	}
	return kvstore.SettledFromMemory(s) - before
}

// A re-import in the same process settles its unchanged rows from the
// store's memory of what it upserted, and every write the memory does not
// account for (through another handle, another store, an erasure, a data
// key deleted by an erasure cut short) makes the next upsert read the
// records again and give the result it always gave.
func TestMemorySettlesOnlyWhatNothingWroteSince(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	s, _, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := kvstore.New(ctx, js) // as another process
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := js.KeyValue(ctx, kvstore.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := js.Stream(ctx, kvstore.KeysStream)
	if err != nil {
		t.Fatal(err)
	}
	subs := storetest.BenchSubs(40, 0)
	created := map[int]subscription.Change{}
	for i := range subs {
		created[i] = subscription.Created
	}
	if n := upsertWant(t, s, subs, created); n != 0 {
		t.Fatalf("first import settled %d rows from memory", n)
	}
	if n := upsertWant(t, s, subs, nil); n != len(subs) {
		t.Fatalf("re-import settled %d rows from memory, want all %d", n, len(subs))
	}

	changed := append([]subscription.Subscription(nil), subs...)
	changed[3].Product = "Suite Ultimate"
	if n := upsertWant(t, s, changed, map[int]subscription.Change{3: subscription.Updated}); n != len(subs)-1 {
		t.Fatalf("a changed row: settled %d from memory, want %d", n, len(subs)-1)
	}
	if n := upsertWant(t, s, subs, map[int]subscription.Change{3: subscription.Updated}); n != len(subs)-1 {
		t.Fatalf("the row changed back: settled %d from memory, want %d", n, len(subs)-1)
	}

	steps := []struct {
		name  string
		write func()
		want  map[int]subscription.Change
	}{
		{"a record written through another handle", func() {
			if _, err := bucket.Put(ctx, subs[5].ID, []byte("not a record")); err != nil {
				t.Fatal(err)
			}
		}, map[int]subscription.Change{5: subscription.Created}},
		{"a row changed by another store", func() {
			x := subs[7]
			x.ContractManager.Email = "new-cm@example.com"
			if _, err := other.Upsert(ctx, []subscription.Subscription{x}); err != nil {
				t.Fatal(err)
			}
		}, map[int]subscription.Change{7: subscription.Updated}},
		{"a data key deleted, its record left", func() {
			if err := keys.SecureDeleteMsg(ctx, kvstore.KeySeqOf(t, s, subs[11].ID)); err != nil {
				t.Fatal(err)
			}
		}, map[int]subscription.Change{11: subscription.Created}},
		{"the first data key deleted, its record left", func() {
			info, err := keys.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range subs {
				if kvstore.KeySeqOf(t, s, x.ID) == info.State.FirstSeq {
					if err := keys.SecureDeleteMsg(ctx, info.State.FirstSeq); err != nil {
						t.Fatal(err)
					}
					upsertAfter(t, s, subs, i)
					return
				}
			}
			t.Fatal("no row names the first data key")
		}, nil},
		{"an erasure", func() {
			if err := s.Erase(ctx, subs[13].ID); err != nil {
				t.Fatal(err)
			}
		}, map[int]subscription.Change{13: subscription.Created}},
	}
	for _, st := range steps {
		st.write()
		if st.want == nil {
			continue
		}
		if n := upsertWant(t, s, subs, st.want); n != 0 {
			t.Errorf("after %s: settled %d rows from memory, want none", st.name, n)
		}
		if n := upsertWant(t, s, subs, nil); n != len(subs) {
			t.Errorf("after %s, the next re-import settled %d rows from memory, want all %d", st.name, n, len(subs))
		}
	}
}

// upsertAfter is the check of TestMemorySettlesOnlyWhatNothingWroteSince
// for a step that knows its row only once it has written.
func upsertAfter(t *testing.T, s *kvstore.Store, subs []subscription.Subscription, row int) {
	t.Helper()
	if n := upsertWant(t, s, subs, map[int]subscription.Change{row: subscription.Created}); n != 0 {
		t.Errorf("after the first data key's deletion: settled %d rows from memory, want none", n)
	}
}

// Two upserts at once that hold the same ids leave the order of their
// writes unknown to the memory: the next upsert reads the records, and each
// row's change is the one that the record it finds makes it.
func TestMemoryDroppedByConcurrentUpserts(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	s, _, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	a := storetest.BenchSubs(200, 0)
	b := append([]subscription.Subscription(nil), a...)
	for i := range b {
		b[i].Product = "Suite Ultimate"
	}
	for range 3 {
		var wg sync.WaitGroup
		for _, x := range [][]subscription.Subscription{a, b} {
			wg.Go(func() {
				if _, err := s.Upsert(ctx, x); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		want := map[int]subscription.Change{}
		for i, x := range a {
			got, err := s.Get(ctx, x.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Product != x.Product {
				want[i] = subscription.Updated
			}
		}
		if n := upsertWant(t, s, a, want); n != 0 {
			t.Errorf("settled %d rows from memory after two upserts of the same ids at once, want none", n)
		}
	}
}
