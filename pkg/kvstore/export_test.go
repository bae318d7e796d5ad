package kvstore

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// DataKeyOf returns the data key the stored record of id names, for the
// conformance suite's DataKey hook.
func DataKeyOf(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	rec, _, err := s.current(context.Background(), id)
	if err != nil || rec == nil {
		t.Fatalf("read record of %s: %v", id, err)
	}
	k, err := s.dataKey(context.Background(), id, *rec)
	if err != nil || k == nil {
		t.Fatalf("read data key of %s: %v", id, err)
	}
	return k
}

// KeySeqOf returns the sequence of the data key that the stored record of
// id names.
func KeySeqOf(t *testing.T, s *Store, id string) uint64 {
	t.Helper()
	rec, _, err := s.current(context.Background(), id)
	if err != nil || rec == nil || rec.KeySeq == 0 {
		t.Fatalf("read record of %s: %v", id, err)
	}
	return rec.KeySeq
}

// SettledFromMemory is how many rows s has settled as unchanged from its
// memory of the rows it upserted (seen.go), without reading their records.
func SettledFromMemory(s *Store) int { return int(s.seen.settled.Load()) }

// RowsInMemory is how many rows s remembers.
func RowsInMemory(s *Store) int {
	s.seen.mu.Lock()
	defer s.seen.mu.Unlock()
	return len(s.seen.rows)
}

// unreadableStream is the bucket's stream handle with its state unreadable,
// as from a server that answers writes but not stream reads.
type unreadableStream struct{ jetstream.Stream }

func (unreadableStream) Info(context.Context, ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	return nil, errors.New("stream info refused")
}

// FailStreamInfo makes s's reads of its bucket's stream state fail until
// the returned function is called.
func FailStreamInfo(s *Store) (restore func()) {
	stream := s.subsInfo
	s.subsInfo = unreadableStream{stream}
	return func() { s.subsInfo = stream }
}
