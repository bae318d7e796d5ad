package kvstore_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/kvstore"
	"renewals/pkg/shred"
	"renewals/pkg/storetest"
	"renewals/pkg/subscription"
)

// writeEarlierLayout stores subs as the versions before RENEWALS_ENDS did:
// each data key on renewals_keys.<id>, each record without a key sequence,
// and the end-date index as one key d.<ordinal>.<id> per entry in the
// renewals_ends bucket.
func writeEarlierLayout(t *testing.T, js jetstream.JetStream, subs []subscription.Subscription) {
	t.Helper()
	ctx := context.Background()
	kv := func(name string) jetstream.KeyValue {
		b, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	recs, ends := kv(kvstore.SubscriptionsBucket), kv(kvstore.EndsBucket)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: kvstore.KeysStream, Subjects: []string{kvstore.KeysSubjectPrefix + "*"},
		MaxMsgsPerSubject: -1, AllowDirect: true, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	for _, x := range subs {
		key, err := shred.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, kvstore.KeysSubjectPrefix+x.ID, key); err != nil {
			t.Fatal(err)
		}
		r, err := shred.SealSubscription(key, x)
		if err != nil {
			t.Fatal(err)
		}
		val, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := recs.Put(ctx, x.ID, val); err != nil {
			t.Fatal(err)
		}
		if _, err := ends.Put(ctx, "d."+strconv.FormatInt(x.EndDate.Ordinal(), 10)+"."+x.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// A data dir of an earlier version opens as it is: New moves its end-date
// index into RENEWALS_ENDS and deletes the old bucket; its records keep
// their keys where they were, and read, re-import unchanged, update and
// erase as new ones do.
func TestOpensEarlierLayout(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	subs := storetest.BenchSubs(50, 0)
	writeEarlierLayout(t, js, subs)

	s, _, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.KeyValue(ctx, kvstore.EndsBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("the earlier end-date bucket after New: %v, want it deleted", err)
	}
	from, to := subs[0].EndDate, subs[0].EndDate
	for _, x := range subs {
		if x.EndDate.Ordinal() < from.Ordinal() {
			from = x.EndDate
		}
		if x.EndDate.Ordinal() > to.Ordinal() {
			to = x.EndDate
		}
	}
	var got int
	err = s.EndingBetween(ctx, from, to, func(x subscription.Subscription) error {
		got++
		if want := subs[idx(t, subs, x.ID)]; !subscription.Equal(x, want) {
			t.Errorf("EndingBetween read %+v, want %+v", x, want)
		}
		return nil
	})
	if err != nil || got != len(subs) {
		t.Fatalf("EndingBetween after the move: %d of %d, %v", got, len(subs), err)
	}
	// Unchanged on re-import, in a batch and one at a time.
	res, err := s.Upsert(ctx, subs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Change != subscription.Unchanged {
			t.Fatalf("re-import of %s: %s, want unchanged", subs[i].ID, r.Change)
		}
	}
	changed := subs[1]
	changed.EndDate = changed.EndDate.AddDays(40)
	res, err = s.Upsert(ctx, []subscription.Subscription{changed})
	if err != nil || res[0].Change != subscription.Updated {
		t.Fatalf("update of %s: %+v %v", changed.ID, res, err)
	}
	if x, err := s.Get(ctx, changed.ID); err != nil || !subscription.Equal(x, changed) {
		t.Fatalf("Get after update: %+v %v", x, err)
	}
	if err := s.Erase(ctx, subs[2].ID); err != nil {
		t.Fatal(err)
	}
	keys, err := js.Stream(ctx, kvstore.KeysStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.GetLastMsgForSubject(ctx, kvstore.KeysSubjectPrefix+subs[2].ID); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the earlier data key after Erase: %v, want it deleted", err)
	}
	if _, err := s.Get(ctx, subs[2].ID); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("Get after Erase: %v, want not found", err)
	}
}

func idx(t *testing.T, subs []subscription.Subscription, id string) int {
	for i, x := range subs {
		if x.ID == id {
			return i
		}
	}
	t.Fatalf("unknown id %s", id)
	return -1
}

// EndingBetween leaves no consumer behind: a year of daily passes lists the
// index thousands of times, and the server's consumer limit is finite.
func TestEndingBetweenLeavesNoConsumer(t *testing.T) {
	js, _ := connect(t)
	ctx := context.Background()
	s, _, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	subs := storetest.BenchSubs(100, 0)
	if _, err := s.Upsert(ctx, subs); err != nil {
		t.Fatal(err)
	}
	from := subscription.MustDate("2026-01-01")
	n := 0
	for range 10 {
		err := s.EndingBetween(ctx, from, from.AddDays(800), func(subscription.Subscription) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != 10*len(subs) {
		t.Fatalf("EndingBetween found %d, want %d", n, 10*len(subs))
	}
	st, err := js.Stream(ctx, kvstore.EndsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Errorf("%d consumers left on %s after 10 listings, want 0", info.State.Consumers, kvstore.EndsStream)
	}
}
