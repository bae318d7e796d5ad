package kvstore_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/kvstore"
	"renewals/pkg/storetest"
	"renewals/pkg/subscription"
)

// upsertWant upserts subs into s and checks each row's change: want by row,
// Unchanged for the rest. It returns the results and how many rows the
// store settled from its memory in this call.
func upsertWant(t *testing.T, s *kvstore.Store, subs []subscription.Subscription, want map[int]subscription.Change) ([]subscription.UpsertResult, int) {
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
	return res, kvstore.SettledFromMemory(s) - before
}

// A re-import in the same process settles its unchanged rows from the
// store's memory of what it upserted, and every write the memory does not
// account for (through another handle, another store, an erasure, a data
// key deleted by an erasure cut short) makes the next upsert read the
// records again and give the result it always gave.
func TestMemorySettlesOnlyWhatNothingWroteSince(t *testing.T) {
	js, s, subs := primed(t)
	ctx := context.Background()
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

	changed := append([]subscription.Subscription(nil), subs...)
	changed[3].Product = "Suite Ultimate"
	if _, n := upsertWant(t, s, changed, map[int]subscription.Change{3: subscription.Updated}); n != len(subs)-1 {
		t.Fatalf("a changed row: settled %d from memory, want %d", n, len(subs)-1)
	}
	if _, n := upsertWant(t, s, subs, map[int]subscription.Change{3: subscription.Updated}); n != len(subs)-1 {
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
			if n := kvstore.RowsInMemory(s); n != 0 {
				t.Errorf("%d rows remembered after an erasure, want none", n)
			}
		}, map[int]subscription.Change{13: subscription.Created}},
		{"a readiness check, which writes", func() {
			if err := s.Ping(ctx); err != nil {
				t.Fatal(err)
			}
		}, map[int]subscription.Change{}},
	}
	for _, st := range steps {
		st.write()
		if st.want == nil {
			continue
		}
		wantMemory := 0
		if len(st.want) == 0 { // a write the memory accounts for
			wantMemory = len(subs)
		}
		if _, n := upsertWant(t, s, subs, st.want); n != wantMemory {
			t.Errorf("after %s: settled %d rows from memory, want %d", st.name, n, wantMemory)
		}
		if _, n := upsertWant(t, s, subs, nil); n != len(subs) {
			t.Errorf("after %s, the next re-import settled %d rows from memory, want all %d", st.name, n, len(subs))
		}
	}
}

// upsertAfter is the check of TestMemorySettlesOnlyWhatNothingWroteSince
// for a step that knows its row only once it has written.
func upsertAfter(t *testing.T, s *kvstore.Store, subs []subscription.Subscription, row int) {
	t.Helper()
	if _, n := upsertWant(t, s, subs, map[int]subscription.Change{row: subscription.Created}); n != 0 {
		t.Errorf("after the first data key's deletion: settled %d rows from memory, want none", n)
	}
}

// primed is a store on a server of its own that has upserted subs twice,
// the second time settling every row from its memory.
func primed(t *testing.T) (jetstream.JetStream, *kvstore.Store, []subscription.Subscription) {
	t.Helper()
	js, _ := connect(t)
	s, _, err := kvstore.New(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	subs := storetest.BenchSubs(40, 0)
	created := map[int]subscription.Change{}
	for i := range subs {
		created[i] = subscription.Created
	}
	if _, n := upsertWant(t, s, subs, created); n != 0 {
		t.Fatalf("first import settled %d rows from memory", n)
	}
	if _, n := upsertWant(t, s, subs, nil); n != len(subs) {
		t.Fatalf("re-import settled %d rows from memory, want all %d", n, len(subs))
	}
	return js, s, subs
}

// Changes to the streams that write no sequence: the bucket's stream
// purged, the bucket or the keys stream deleted and declared again (by
// another process's start). The rows are gone, and a re-import creates
// them again.
func TestMemoryDroppedByStreamChanges(t *testing.T) {
	ctx := context.Background()
	for name, change := range map[string]func(t *testing.T, js jetstream.JetStream){
		"bucket stream purged": func(t *testing.T, js jetstream.JetStream) {
			st, err := js.Stream(ctx, "KV_"+kvstore.SubscriptionsBucket)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Purge(ctx); err != nil {
				t.Fatal(err)
			}
		},
		"bucket declared again": func(t *testing.T, js jetstream.JetStream) {
			if err := js.DeleteKeyValue(ctx, kvstore.SubscriptionsBucket); err != nil {
				t.Fatal(err)
			}
			if _, _, err := kvstore.New(ctx, js); err != nil {
				t.Fatal(err)
			}
		},
		"keys stream declared again": func(t *testing.T, js jetstream.JetStream) {
			if err := js.DeleteStream(ctx, kvstore.KeysStream); err != nil {
				t.Fatal(err)
			}
			if _, _, err := kvstore.New(ctx, js); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			js, s, subs := primed(t)
			change(t, js)
			created := map[int]subscription.Change{}
			for i := range subs {
				created[i] = subscription.Created
			}
			if _, n := upsertWant(t, s, subs, created); n != 0 {
				t.Errorf("settled %d rows from memory, want none", n)
			}
		})
	}
}

// An upsert that settles ids from memory while another, in flight at the
// same time, changes them may end last; the memory must not then hold the
// first's rows as the records. A large batch of new rows keeps the first
// in flight while the second writes.
func TestMemoryDroppedByOverlappingUpserts(t *testing.T) {
	ctx := context.Background()
	for range 3 {
		_, s, base := primed(t)
		a := append(slices.Clone(base), storetest.BenchSubs(3000, 100)...)
		b := slices.Clone(base)
		for i := range b {
			b[i].Product = "Suite Ultimate"
		}
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
		for i, x := range base {
			got, err := s.Get(ctx, x.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Product != x.Product {
				want[i] = subscription.Updated
			}
		}
		upsertWant(t, s, base, want)
	}
}

// Two stores that create the same new ids at once: the batch the server
// refuses (a record's compare-and-set failed) deletes the data keys it
// wrote, so that every key held names a record.
func TestRefusedBatchDropsItsKeys(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	var stores []*kvstore.Store
	for range 2 {
		s, _, err := kvstore.New(ctx, js)
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	total := 0
	for round := range 5 {
		subs := storetest.BenchSubs(200, round*1000)
		var wg sync.WaitGroup
		for _, s := range stores {
			wg.Go(func() {
				if _, err := s.Upsert(ctx, subs); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		total += len(subs)
	}
	keys, err := js.Stream(ctx, kvstore.KeysStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := keys.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int(info.State.Msgs) != total {
		t.Errorf("%d data keys held for %d subscriptions", info.State.Msgs, total)
	}
}

// When the streams' state cannot be read, an upsert goes without the
// memory: it reads the records and gives the results they give. Its writes,
// which the memory did not account for, make the next upsert read again
// once the state can be read, and that one fills the memory anew.
func TestMemorySkippedWhileStreamsUnreadable(t *testing.T) {
	_, s, subs := primed(t)
	changed := slices.Clone(subs)
	changed[5].Product = "Suite Ultimate"
	restore := kvstore.FailStreamInfo(s)
	if _, n := upsertWant(t, s, changed, map[int]subscription.Change{5: subscription.Updated}); n != 0 {
		t.Errorf("with the streams unreadable: settled %d rows from memory, want none", n)
	}
	if _, n := upsertWant(t, s, changed, nil); n != 0 {
		t.Errorf("still unreadable: settled %d rows from memory, want none", n)
	}
	restore()
	if _, n := upsertWant(t, s, changed, nil); n != 0 {
		t.Errorf("after writes it did not account for: settled %d rows from memory, want none", n)
	}
	if _, n := upsertWant(t, s, changed, nil); n != len(changed) {
		t.Errorf("memory filled again: settled %d rows from memory, want all %d", n, len(changed))
	}
}
