package redisstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/shred"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

func sub(id, end, cm string) subscription.Subscription {
	seats := 3
	return subscription.Subscription{
		ID: id, EndDate: subscription.MustDate(end), Status: subscription.StatusActive, Seats: &seats,
		CustomerName: `A & B <Ltd> "quoted" ` + "\u2028", Product: "Suite",
		ContractManager: subscription.Contact{Name: "CM " + cm, Email: cm + "@example.com"},
	}
}

// compactRecord is s sealed under key in the compact form that Upsert wrote
// before records were stored as JSON: a version byte, the raw digest, the
// end ordinal and the clear part's length, the clear part, the sealed part.
func compactRecord(t *testing.T, key []byte, s subscription.Subscription) []byte {
	t.Helper()
	r, err := shred.SealSubscription(key, s)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := hex.DecodeString(r.Digest)
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte{0x01}, digest...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.End))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Clear)))
	return append(append(b, r.Clear...), r.Sealed...)
}

// A record stored in the compact form, as Upsert wrote it before records
// were stored as JSON, compares by its data: the same row again is unchanged
// and keeps the compact record, a changed row updates it to the JSON form,
// and both open.
func TestUpsertOverCompactRecords(t *testing.T) {
	r := testenv.StartRedis(t)
	s, _, err := Open(context.Background(), r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	same, changed := sub("110000000011", "2027-01-31", "x"), sub("110000000012", "2027-02-28", "y")
	for _, x := range []subscription.Subscription{same, changed} {
		key, err := shred.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.MSet(ctx, dataKeyKey(x.ID), key, subKey(x.ID), compactRecord(t, key, x)).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.ZAdd(ctx, endsKey, redis.Z{Score: float64(x.EndDate.Ordinal()), Member: x.ID}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	changed2 := changed
	changed2.ContractManager.Email = "new@example.com"
	res, err := s.Upsert(ctx, []subscription.Subscription{same, changed2})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Change != subscription.Unchanged || res[1].Change != subscription.Updated || res[1].PreviousEndDate != changed.EndDate {
		t.Fatalf("results %+v, want unchanged and updated", res)
	}
	for _, tc := range []struct {
		x     subscription.Subscription
		first byte
	}{{same, 0x01}, {changed2, '{'}} {
		raw, err := c.Get(ctx, subKey(tc.x.ID)).Bytes()
		if err != nil || raw[0] != tc.first {
			t.Errorf("stored %s: %.8q, %v; want it to start with %q", tc.x.ID, raw, err, tc.first)
		}
		got, err := s.Get(ctx, tc.x.ID)
		if err != nil || !subscription.Equal(got, tc.x) {
			t.Errorf("Get(%s) = %+v, %v; want %+v", tc.x.ID, got, err, tc.x)
		}
	}
}

// Two importers of the same ids at once: every id ends up with exactly one
// created result across both, each record opens under its data key, and the
// results of the later writer name the earlier one's end date.
func TestUpsertConcurrentSameIDs(t *testing.T) {
	s, _, err := Open(context.Background(), testenv.StartRedis(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n = 600
	batch := func(end, cm string) []subscription.Subscription {
		out := make([]subscription.Subscription, n)
		for i := range out {
			out[i] = sub(fmt.Sprintf("11%010d", i), end, cm)
		}
		return out
	}
	a, b := batch("2027-01-31", "a"), batch("2027-03-31", "b")
	var ra, rb []subscription.UpsertResult
	var ea, eb error
	var wg sync.WaitGroup
	wg.Go(func() { ra, ea = s.Upsert(ctx, a) })
	wg.Go(func() { rb, eb = s.Upsert(ctx, b) })
	wg.Wait()
	if err := errors.Join(ea, eb); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		x, y := ra[i], rb[i]
		if (x.Change == subscription.Created) == (y.Change == subscription.Created) {
			t.Fatalf("row %d: results %+v and %+v: want exactly one created", i, x, y)
		}
		got, err := s.Get(ctx, a[i].ID)
		if err != nil {
			t.Fatalf("get %s: %v", a[i].ID, err)
		}
		// The one that did not create updated over the other's end date, and
		// what is stored is the later writer's.
		first, later, res := a[i], b[i], y
		if y.Change == subscription.Created {
			first, later, res = b[i], a[i], x
		}
		if res.Change != subscription.Updated || res.PreviousEndDate != first.EndDate {
			t.Fatalf("row %d: later writer got %+v, want updated from %v", i, res, first.EndDate)
		}
		if !subscription.Equal(got, later) {
			t.Fatalf("row %d: stored %+v, want the later writer's %+v", i, got, later)
		}
	}
}

// Upserts racing with erasures of the same ids never leave a record that
// does not open: each id is either gone or readable.
func TestUpsertRacingErase(t *testing.T) {
	s, _, err := Open(context.Background(), testenv.StartRedis(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var subs []subscription.Subscription
	for i := range 300 {
		subs = append(subs, sub(fmt.Sprintf("12%010d", i), "2027-01-31", "c"))
	}
	if _, err := s.Upsert(ctx, subs); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range subs {
			subs[i].EndDate = subscription.MustDate("2027-05-31")
		}
		if _, err := s.Upsert(ctx, subs); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		for i := 0; i < len(subs); i += 3 {
			if err := s.Erase(ctx, subs[i].ID); err != nil && !errors.Is(err, subscription.ErrNotFound) {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	for _, x := range subs {
		if _, err := s.Get(ctx, x.ID); err != nil && !errors.Is(err, subscription.ErrNotFound) {
			t.Errorf("get %s after the race: %v", x.ID, err)
		}
	}
}

// Two importers updating the same existing ids at once: for each id, one of
// them updates over the first import's end date and the other over its
// rival's, and what stays is the later writer's.
func TestUpsertConcurrentUpdates(t *testing.T) {
	s, _, err := Open(context.Background(), testenv.StartRedis(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n = 600
	batch := func(end, cm string) []subscription.Subscription {
		out := make([]subscription.Subscription, n)
		for i := range out {
			out[i] = sub(fmt.Sprintf("13%010d", i), end, cm)
		}
		return out
	}
	first := batch("2027-01-31", "first")
	if _, err := s.Upsert(ctx, first); err != nil {
		t.Fatal(err)
	}
	a, b := batch("2027-02-28", "a"), batch("2027-03-31", "b")
	var ra, rb []subscription.UpsertResult
	var ea, eb error
	var wg sync.WaitGroup
	wg.Go(func() { ra, ea = s.Upsert(ctx, a) })
	wg.Go(func() { rb, eb = s.Upsert(ctx, b) })
	wg.Wait()
	if err := errors.Join(ea, eb); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		x, y := ra[i], rb[i]
		if x.Change != subscription.Updated || y.Change != subscription.Updated {
			t.Fatalf("row %d: results %+v and %+v: want both updated", i, x, y)
		}
		got, err := s.Get(ctx, a[i].ID)
		if err != nil {
			t.Fatalf("get %s: %v", a[i].ID, err)
		}
		// The earlier writer updated over the first import, the later one
		// over the earlier one; the later one's data stays.
		later, earlier := a[i], b[i]
		if x.PreviousEndDate == first[i].EndDate {
			later, earlier = b[i], a[i]
			x, y = y, x
		}
		if y.PreviousEndDate != first[i].EndDate || x.PreviousEndDate != earlier.EndDate {
			t.Fatalf("row %d: results %+v and %+v do not chain from %v", i, ra[i], rb[i], first[i].EndDate)
		}
		if !subscription.Equal(got, later) {
			t.Fatalf("row %d: stored %+v, want the later writer's %+v", i, got, later)
		}
	}
}

// A record whose data key is gone (an erasure cut short) counts as erased:
// upserting its id creates it again under a new key, and it opens.
func TestUpsertOverRecordWithoutDataKey(t *testing.T) {
	r := testenv.StartRedis(t)
	s, _, err := Open(context.Background(), r.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	x := sub("140000000001", "2027-01-31", "old")
	if _, err := s.Upsert(ctx, []subscription.Subscription{x}); err != nil {
		t.Fatal(err)
	}
	c := r.Client(t)
	old, err := c.Get(ctx, dataKeyKey(x.ID)).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, dataKeyKey(x.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []subscription.Change{subscription.Created, subscription.Unchanged} {
		res, err := s.Upsert(ctx, []subscription.Subscription{x})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Change != want {
			t.Fatalf("upsert %d: %+v, want %s", i, res[0], want)
		}
	}
	got, err := s.Get(ctx, x.ID)
	if err != nil || !subscription.Equal(got, x) {
		t.Fatalf("get = %+v, %v; want %+v", got, err, x)
	}
	if k, err := c.Get(ctx, dataKeyKey(x.ID)).Bytes(); err != nil || bytes.Equal(k, old) || len(k) != shred.KeySize {
		t.Fatalf("data key after re-creation: %x, %v; want a new one", k, err)
	}
}
