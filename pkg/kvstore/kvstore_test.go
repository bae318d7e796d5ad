package kvstore_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/kvstore"
	"renewals/pkg/storetest"
	"renewals/pkg/testenv"
)

// connect starts an embedded server storing under a directory of the test's
// and returns a JetStream handle and that directory.
func connect(t testing.TB) (jetstream.JetStream, string) {
	dir := t.TempDir()
	srv := testenv.NATSAt(t, dir, -1)
	_, js := testenv.Connect(t, srv.ClientURL())
	return js, dir
}

func open(t *testing.T) storetest.Backend {
	js, dir := connect(t)
	ctx := context.Background()
	s, l, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := js.KeyValue(ctx, kvstore.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	_, peer, err := kvstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return storetest.Backend{
		Store:   s,
		Ledger:  l,
		Peer:    peer,
		Dump:    func(t *testing.T) map[string][]byte { return dump(t, js, dir) },
		DataKey: func(t *testing.T, id string) []byte { return kvstore.DataKeyOf(t, s, id) },
		Corrupt: func(t *testing.T, id string) {
			if _, err := subs.Put(ctx, id, []byte("not a record")); err != nil {
				t.Fatal(err)
			}
		},
	}
}

// dump reads every message of every stream through the stream API, and every
// file under the server's store directory.
func dump(t *testing.T, js jetstream.JetStream, dir string) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("dump: stream %s: %v", name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatalf("dump: stream %s: %v", name, err)
		}
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("dump: stream %s seq %d: %v", name, seq, err)
			}
			out[fmt.Sprintf("stream %s seq %d", name, seq)] = append([]byte(m.Subject+"\x00"+fmt.Sprint(m.Header)+"\x00"), m.Data...)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatalf("dump: list streams: %v", err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		out["file "+p] = b
		return nil
	})
	if err != nil {
		t.Fatalf("dump: files: %v", err)
	}
	return out
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}
