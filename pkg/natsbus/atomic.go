package natsbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Atomic batch publish (nats-server 2.12 or newer, on a stream that allows
// it): the messages of a batch are stored all or none, and the file store
// syncs them to disk once for the whole batch rather than once per message,
// which with sync_interval always is what bounds a stream of small writes.
// nats.go has no client for it, so these few functions speak its headers.

// AtomicMax is the server's default maximum of messages in one atomic batch.
const AtomicMax = 1000

// Header names of an atomic batch.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// ErrBatchRefused means the server refused an atomic batch as a whole (a
// compare-and-set failed against a concurrent writer, or too many batches
// were open): nothing of it was stored, and the caller does the work one
// message at a time.
var ErrBatchRefused = errors.New("atomic batch refused")

// Batchable reports whether the server has atomic batch publish and
// batched direct gets (multi_last, a batch from a sequence): 2.12 or newer.
func Batchable(nc *nats.Conn) bool { return ServerAtLeast(nc, 2, 12) }

// EnableAtomic turns on atomic batch publish on a stream (a key-value
// bucket's config has no such field).
func EnableAtomic(ctx context.Context, js jetstream.JetStream, stream string) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// batchAck is the server's answer to an atomic batch's commit.
type batchAck struct {
	Error *jetstream.APIError `json:"error"`
	Seq   uint64              `json:"seq"` // the last message's
	Count int                 `json:"count"`
}

// PublishAtomic stores msgs (at most AtomicMax, one stream) all or none,
// under consecutive sequences, and returns the first. It sets the batch's
// headers on msgs. It returns an error
// wrapping ErrBatchRefused when the server refused the batch (nothing of it
// stored), another error when the answer was lost.
func PublishAtomic(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	var raw [6]byte // the id is stored in each message's header: short
	if _, err := rand.Read(raw[:]); err != nil {
		return 0, err
	}
	id := hex.EncodeToString(raw[:])
	for i, m := range msgs {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := nc.PublishMsg(m); err != nil {
				return 0, fmt.Errorf("publish batch: %w", err)
			}
		}
	}
	last := msgs[len(msgs)-1]
	last.Header.Set(hdrBatchCommit, "1")
	resp, err := nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return 0, fmt.Errorf("publish batch of %d: %w", len(msgs), err)
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("publish batch of %d: %w", len(msgs), err)
	}
	if ack.Error != nil {
		return 0, fmt.Errorf("%w: %w", ErrBatchRefused, ack.Error)
	}
	if ack.Count != len(msgs) || ack.Seq < uint64(len(msgs)) {
		return 0, fmt.Errorf("publish batch of %d: the server acknowledged %d ending at %d", len(msgs), ack.Count, ack.Seq)
	}
	return ack.Seq - uint64(len(msgs)) + 1, nil
}

// PublishAtomicAll stores msgs in atomic batches of AtomicMax, in order,
// and returns each message's sequence.
func PublishAtomicAll(ctx context.Context, nc *nats.Conn, msgs []*nats.Msg) ([]uint64, error) {
	seqs := make([]uint64, len(msgs))
	for c := 0; c < len(msgs); c += AtomicMax {
		part := msgs[c:min(c+AtomicMax, len(msgs))]
		first, err := PublishAtomic(ctx, nc, part)
		if err != nil {
			return nil, err
		}
		for i := range part {
			seqs[c+i] = first + uint64(i)
		}
	}
	return seqs, nil
}
