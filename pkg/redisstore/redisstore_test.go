package redisstore_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"

	"renewals/pkg/redisstore"
	"renewals/pkg/storetest"
	"renewals/pkg/testenv"
)

func open(t *testing.T) storetest.Backend {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	s, l, err := redisstore.Open(ctx, r.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := r.Client(t)
	// Uncompressed RDB preambles in AOF base files, so that the erasure test
	// can search them for bytes; erasure itself does not depend on it.
	if err := c.ConfigSet(ctx, "rdbcompression", "no").Err(); err != nil {
		t.Fatal(err)
	}
	dir, err := c.ConfigGet(ctx, "dir").Result()
	if err != nil {
		t.Fatal(err)
	}
	_, peer := redisstore.New(r.Client(t))
	return storetest.Backend{
		Store:  s,
		Ledger: l,
		Peer:   peer,
		Dump:   func(t *testing.T) map[string][]byte { return dump(t, c, dir["dir"]) },
		DataKey: func(t *testing.T, id string) []byte {
			b, err := c.Get(ctx, redisstore.Prefix+"dk:"+id).Bytes()
			if err != nil {
				t.Fatalf("read data key of %s: %v", id, err)
			}
			return b
		},
		Corrupt: func(t *testing.T, id string) {
			if err := c.Set(ctx, redisstore.Prefix+"sub:"+id, "not a record", 0).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// dump reads every key and value with type-aware reads, and every file in
// the server's directory (the AOF base and incremental files).
func dump(t *testing.T, c *redis.Client, dir string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		var v string
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			v = c.Get(ctx, k).Val()
		case "hash":
			v = fmt.Sprint(c.HGetAll(ctx, k).Val())
		case "set":
			v = fmt.Sprint(c.SMembers(ctx, k).Val())
		case "zset":
			v = fmt.Sprint(c.ZRangeWithScores(ctx, k, 0, -1).Val())
		case "list":
			v = fmt.Sprint(c.LRange(ctx, k, 0, -1).Val())
		case "none":
			continue
		default:
			t.Fatalf("dump: key %s has type %s that the dump cannot read", k, typ)
		}
		out["key "+k] = []byte(k + "\x00" + v)
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("dump: scan: %v", err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) { // Redis deletes old AOF files as it goes
			return err
		}
		out["file "+p] = b
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("dump: files: %v", err)
	}
	return out
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}
