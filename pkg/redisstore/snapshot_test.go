package redisstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/redisstore"
	"renewals/pkg/shred"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// With snapshots on and no append-only file, the common packaged set-up,
// dump.rdb holds what the last snapshot saw: after Erase it must hold no
// byte of the erased subscription, neither its personal data (sealed or not)
// nor its data key nor its record, while still holding the others. A save
// already running when Erase starts forked before the delete: Erase must
// wait it out and save again.
func TestEraseReachesSnapshot(t *testing.T) {
	t.Run("idle", func(t *testing.T) { testEraseReachesSnapshot(t, false) })
	t.Run("save already running", func(t *testing.T) { testEraseReachesSnapshot(t, true) })
}

func testEraseReachesSnapshot(t *testing.T, running bool) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := r.Client(t)
	// Snapshots on, AOF off; uncompressed, so that a search of the file's
	// bytes finds the strings it holds.
	for k, v := range map[string]string{"appendonly": "no", "save": "3600 1", "rdbcompression": "no"} {
		if err := c.ConfigSet(ctx, k, v).Err(); err != nil {
			t.Fatalf("CONFIG SET %s %q: %v", k, v, err)
		}
	}
	dir, err := c.ConfigGet(ctx, "dir").Result()
	if err != nil {
		t.Fatal(err)
	}
	rdb := filepath.Join(dir["dir"], "dump.rdb")

	s, _, err := redisstore.Open(ctx, r.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	seats := 5
	erased := subscription.Subscription{
		ID: "110000009999", EndDate: subscription.MustDate("2027-06-30"), Status: subscription.StatusActive, Seats: &seats,
		CustomerName: "Snapshot Marker Customer Ltd", Product: "Suite",
		ContractManager: subscription.Contact{Name: "Philippa Snapshotworth", Email: "philippa.snapshotworth@example.org", Phone: "+44 1632 960777"},
		PrimaryAdmin:    subscription.Contact{Name: "Admin Rdbsson", Email: "admin.rdbsson@example.org"},
		SecondaryAdmins: []string{"second.admin.rdb@example.org"},
	}
	kept := subscription.Subscription{ID: "110000001111", EndDate: subscription.MustDate("2027-06-30"), Status: subscription.StatusActive, CustomerName: "Bystander Kept Ltd"}
	if _, err := s.Upsert(ctx, []subscription.Subscription{erased, kept}); err != nil {
		t.Fatal(err)
	}
	dk, err := c.Get(ctx, redisstore.Prefix+"dk:"+erased.ID).Bytes()
	if err != nil || len(dk) != shred.KeySize {
		t.Fatalf("read data key: %d bytes, %v", len(dk), err)
	}
	rec, err := c.Get(ctx, redisstore.Prefix+"sub:"+erased.ID).Bytes()
	if err != nil {
		t.Fatalf("read record: %v", err)
	}
	stored, err := shred.UnmarshalRecord(rec)
	if err != nil {
		t.Fatalf("read record %.20q: %v", rec, err)
	}
	sealed := []byte(base64.StdEncoding.EncodeToString(stored.Sealed)) // as the JSON record holds it
	traces := map[string][]byte{
		"CM name": []byte(erased.ContractManager.Name), "CM email": []byte(erased.ContractManager.Email),
		"CM phone": []byte(erased.ContractManager.Phone), "PA name": []byte(erased.PrimaryAdmin.Name),
		"PA email": []byte(erased.PrimaryAdmin.Email), "SA email": []byte(erased.SecondaryAdmins[0]),
		"data key": dk, "sealed part": sealed, "record digest": []byte(stored.Digest),
		"record key": []byte(redisstore.Prefix + "sub:" + erased.ID), "customer marker": []byte(erased.CustomerName),
	}
	found := func(b []byte) []string {
		var out []string
		for what, n := range traces {
			if bytes.Contains(b, n) {
				out = append(out, what)
			}
		}
		return out
	}

	// A snapshot with the subscription in it.
	bgsave(t, c)
	before, err := os.ReadFile(rdb)
	if err != nil {
		t.Fatalf("no snapshot after BGSAVE: %v", err)
	}
	// Positive control: the file does hold the data key, the sealed record
	// and the clear part; the personal data was never in clear.
	for _, what := range []string{"data key", "sealed part", "customer marker"} {
		if !bytes.Contains(before, traces[what]) {
			t.Fatalf("dump.rdb before erasure lacks the %s: the search cannot see it", what)
		}
	}
	for _, what := range found(before) {
		if strings.Contains(what, "name") || strings.Contains(what, "email") || strings.Contains(what, "phone") {
			t.Errorf("dump.rdb holds the %s in clear before erasure", what)
		}
	}

	if running {
		// A slow save (rdb-key-save-delay: microseconds per key) that
		// forks now, with the subscription still in.
		if err := c.ConfigSet(ctx, "rdb-key-save-delay", "100000").Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.BgSave(ctx).Err(); err != nil {
			t.Fatalf("BGSAVE: %v", err)
		}
	}
	if err := s.Erase(ctx, erased.ID); err != nil {
		t.Fatalf("Erase: %v", err)
	}
	after, err := os.ReadFile(rdb)
	if err != nil {
		t.Fatal(err)
	}
	if f := found(after); len(f) > 0 {
		t.Errorf("dump.rdb after Erase still holds: %s", strings.Join(f, ", "))
	}
	if !bytes.Contains(after, []byte(kept.CustomerName)) {
		t.Error("dump.rdb after Erase lacks the other subscription: it is not a full snapshot")
	}
}

// bgsave has Redis write a snapshot and waits for it to finish.
func bgsave(t *testing.T, c *redis.Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.BgSave(ctx).Err(); err != nil {
		t.Fatalf("BGSAVE: %v", err)
	}
	testenv.Eventually(t, 30*time.Second, "the snapshot to finish", func() bool {
		info := c.Info(ctx, "persistence").Val()
		return strings.Contains(info, "rdb_bgsave_in_progress:0")
	})
	if info := c.Info(ctx, "persistence").Val(); !strings.Contains(info, "rdb_last_bgsave_status:ok") {
		t.Fatalf("snapshot failed: %s", info)
	}
}
