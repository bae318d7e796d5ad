package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"renewals/pkg/natsbus"
	"renewals/pkg/shred"
	"renewals/pkg/subscription"
)

// The store reads and writes a whole Upsert batch in a few requests on a
// server that allows it (nats-server 2.12 or newer): it reads the data keys
// and the records of up to multiLastMax subscriptions with one batched
// direct get (multi_last), and writes the new keys, the index entries and
// the records each as one atomic batch publish, which the file store syncs
// to disk once for the whole batch rather than once per message. Writing
// one subscription at a time with sync_interval always was bound by the
// disk's fsyncs: three per row.
const (
	multiLastMax = 1024 // the server's maximum answers to one multi_last
)

// Header names of the JetStream API that the batched paths set or read.
const (
	hdrExpectSeq   = "Nats-Expected-Last-Subject-Sequence"
	hdrSubject     = "Nats-Subject"
	hdrSequence    = "Nats-Sequence"
	hdrKVOperation = "KV-Operation"
	kvDelete       = "DEL"
	kvPurge        = "PURGE"
	kvSubjectsPfx  = "$KV."
	kvStreamPfx    = "KV_"
	apiDirectGet   = "$JS.API.DIRECT.GET."
)

// lastMsg is the last message stored on a subject.
type lastMsg struct {
	seq     uint64
	data    []byte
	deleted bool // a key-value delete or purge marker
}

// lastMsgs returns the last message of each of subjects that has one in
// stream, by batched direct gets of up to multiLastMax subjects each.
func lastMsgs(ctx context.Context, nc *nats.Conn, stream string, subjects []string) (map[string]lastMsg, error) {
	out := make(map[string]lastMsg, len(subjects))
	for c := 0; c < len(subjects); c += multiLastMax {
		if err := lastMsgsChunk(ctx, nc, stream, subjects[c:min(c+multiLastMax, len(subjects))], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readTimeout bounds one batched read: a request the server drops is
// never answered.
const readTimeout = 30 * time.Second

func lastMsgsChunk(ctx context.Context, nc *nats.Conn, stream string, subjects []string, out map[string]lastMsg) error {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, len(subjects)})
	if err != nil {
		return err
	}
	inbox := nc.NewInbox()
	msgs := make(chan *nats.Msg, len(subjects)+1)
	sub, err := nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(apiDirectGet+stream, inbox, req); err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	for {
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return fmt.Errorf("read %s: %w", stream, ctx.Err())
		}
		if len(m.Data) == 0 && m.Header.Get(hdrSubject) == "" {
			switch st := m.Header.Get("Status"); st {
			case "204", "404": // end of the batch; none found
				return nil
			default:
				return fmt.Errorf("read %s: status %s %s", stream, st, m.Header.Get("Description"))
			}
		}
		subj := m.Header.Get(hdrSubject)
		seq, err := strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64)
		if subj == "" || err != nil {
			return fmt.Errorf("read %s: an answer without subject or sequence", stream)
		}
		op := m.Header.Get(hdrKVOperation)
		out[subj] = lastMsg{seq: seq, data: m.Data, deleted: op == kvDelete || op == kvPurge}
	}
}

// keysBySeq reads the messages of RENEWALS_KEYS at seqs: sorted, near
// sequences are read as one run (a batched direct get from the run's
// first), and every run's request is sent before any answer is awaited.
func keysBySeq(ctx context.Context, nc *nats.Conn, seqs []uint64) (map[uint64][]byte, error) {
	seqs = slices.Clone(seqs)
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	runs := runsOf(seqs)
	out := make(map[uint64][]byte, len(seqs))
	for c := 0; c < len(runs); c += runsInFlight {
		if err := keysRuns(ctx, nc, runs[c:min(c+runsInFlight, len(runs))], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

const (
	runGap       = 16  // sequences apart that one run still reads through
	runsInFlight = 256 // requests sent before their answers are read
)

// run is a span of sequences read with one request.
type run struct{ first, last uint64 }

func keysRuns(ctx context.Context, nc *nats.Conn, runs []run, out map[uint64][]byte) error {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	inbox := nc.NewInbox()
	msgs := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(inbox+".*", msgs)
	if err != nil {
		return fmt.Errorf("read %s: %w", KeysStream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, r := range runs {
		req, err := json.Marshal(struct {
			Seq   uint64 `json:"seq"`
			Batch int    `json:"batch"`
			Next  string `json:"next_by_subj"`
		}{r.first, int(r.last-r.first) + 1, KeysSubject})
		if err != nil {
			return err
		}
		if err := nc.PublishRequest(apiDirectGet+KeysStream, inbox+"."+strconv.Itoa(i), req); err != nil {
			return fmt.Errorf("read %s: %w", KeysStream, err)
		}
	}
	for open := len(runs); open > 0; {
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return fmt.Errorf("read %s: %w", KeysStream, ctx.Err())
		}
		if len(m.Data) == 0 && m.Header.Get(hdrSubject) == "" {
			switch st := m.Header.Get("Status"); st {
			case "204", "404": // end of a run; none found
				open--
				continue
			default:
				return fmt.Errorf("read %s: status %s %s", KeysStream, st, m.Header.Get("Description"))
			}
		}
		seq, err := strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64)
		if err != nil {
			return fmt.Errorf("read %s: an answer without sequence", KeysStream)
		}
		out[seq] = m.Data
	}
	return nil
}

// upsertBatch is Upsert of rows with distinct ids on a batchable server:
// first the cheap comparison of unchanged rows (see unchangedRows), then,
// for the rows it could not settle, the records in one batched read and the
// data keys they name in a few more, then at most three atomic batches: the
// new data keys, the index entries (one message per end date), the records.
// When the server refuses a batch (a concurrent writer, too many open
// batches), the rows go one at a time.
//
// The cheap comparison pays for itself only on rows it settles: after a
// batch of mostly new or changed rows (a first import), the next batch goes
// straight to the batched read, which answers for absent records at once,
// and whose results say again whether the rows were mostly unchanged.
func (s *Store) upsertBatch(ctx context.Context, subs []subscription.Subscription) (_ []subscription.UpsertResult, err error) {
	t, err := s.beginSeen(ctx, subs)
	if err != nil {
		return nil, err
	}
	var written []uint64 // the sequences of the records written
	done := false        // written is all this batch wrote: no row went one at a time
	defer func() { s.seen.end(t, err == nil && done, written) }()
	out := make([]subscription.UpsertResult, len(subs))
	settled, absent := make([]bool, len(subs)), make([]bool, len(subs))
	s.seen.settle(t, subs, out, settled)
	if !s.changing.Load() && slices.Contains(settled, false) {
		if settled, absent, err = s.unchangedRows(ctx, subs, out, settled); err != nil {
			return nil, err
		}
	}
	defer func() {
		unchanged := 0
		for _, r := range out {
			if r.Change == subscription.Unchanged {
				unchanged++
			}
		}
		s.changing.Store(2*unchanged < len(out))
	}()
	olds := make([]*stored, len(subs))
	revs := make([]uint64, len(subs))
	keys := make([][]byte, len(subs))
	var rest []int // the rows that need their record's revision
	for i := range subs {
		if !settled[i] && !absent[i] {
			rest = append(rest, i)
		}
	}
	if len(rest) > 0 {
		ids := make([]string, len(rest))
		for j, i := range rest {
			ids[j] = subs[i].ID
		}
		o, r, k, _, err := s.readStored(ctx, ids, false) // an unreadable record is overwritten, as upsertOne does
		if err != nil {
			return nil, err
		}
		for j, i := range rest {
			olds[i], revs[i], keys[i] = o[j], r[j], k[j]
		}
	}
	recs := make([]stored, len(subs))
	write := make([]bool, len(subs))
	var newKeys []*nats.Msg
	var newKeyRows []int
	for i, x := range subs {
		if settled[i] {
			continue
		}
		key, old := keys[i], olds[i]
		if key == nil {
			old = nil // new, or its erasure was cut short
			if key, err = shred.NewKey(); err != nil {
				return nil, err
			}
			newKeys = append(newKeys, &nats.Msg{Subject: KeysSubject, Data: keyMsg(key, x.ID)})
			newKeyRows = append(newKeyRows, i)
		}
		if old != nil {
			// A row without seat usage keeps what the stored record has.
			keep, err := shred.Usage(old.Record)
			if err != nil {
				return nil, fmt.Errorf("read subscription %s: %w", x.ID, err)
			}
			x = subscription.KeepUsage(x, keep)
			fp, err := shred.Fingerprint(key, x)
			if err != nil {
				return nil, err
			}
			if shred.SameData(old.Record, fp) {
				out[i] = subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: subscription.DateFromOrdinal(old.End)}
				continue
			}
		}
		sealed, err := shred.SealSubscription(key, x)
		if err != nil {
			return nil, err
		}
		recs[i] = stored{Record: sealed}
		out[i] = subscription.UpsertResult{Change: subscription.Created}
		if old != nil {
			recs[i].KeySeq = old.KeySeq
			out[i] = subscription.UpsertResult{Change: subscription.Updated, PreviousEndDate: subscription.DateFromOrdinal(old.End)}
		}
		write[i] = true
	}
	seqs, err := natsbus.PublishAtomicAll(ctx, s.nc, newKeys)
	if errors.Is(err, natsbus.ErrBatchRefused) {
		return s.upsertSlow(ctx, subs)
	}
	if err != nil {
		return nil, fmt.Errorf("write data keys: %w", err)
	}
	for j, i := range newKeyRows {
		recs[i].KeySeq = seqs[j]
	}
	// The index entries go in before the records (see upsertOne).
	byDay := map[int64][]string{}
	var days []int64
	var records []*nats.Msg
	for i, x := range subs {
		if !write[i] {
			continue
		}
		if olds[i] == nil || keys[i] == nil || olds[i].End != recs[i].End {
			if _, ok := byDay[recs[i].End]; !ok {
				days = append(days, recs[i].End)
			}
			byDay[recs[i].End] = append(byDay[recs[i].End], x.ID)
		}
		val, err := recs[i].marshal()
		if err != nil {
			return nil, err
		}
		records = append(records, &nats.Msg{Subject: subsPfx + x.ID, Data: val, Header: nats.Header{hdrExpectSeq: {strconv.FormatUint(revs[i], 10)}}})
	}
	index := make([]*nats.Msg, 0, len(days))
	for _, d := range days {
		index = append(index, &nats.Msg{Subject: EndsSubjectPrefix + strconv.FormatInt(d, 10), Data: []byte(strings.Join(byDay[d], "\n"))})
	}
	for k, step := range [][]*nats.Msg{index, records} {
		got, err := natsbus.PublishAtomicAll(ctx, s.nc, step)
		if errors.Is(err, natsbus.ErrBatchRefused) {
			for _, q := range seqs {
				s.dropKey(ctx, q) // no record names them
			}
			return s.upsertSlow(ctx, subs)
		}
		if err != nil {
			return nil, fmt.Errorf("write subscriptions: %w", err)
		}
		if k == 1 {
			written = got
		}
	}
	done = true
	return out, nil
}

// unchangedRows settles the rows of subs whose stored record holds the
// same data, writing their Unchanged result into out, and tells the rows
// that have no record at all; every other row is left for the full read.
//
// It is the shape of work that makes a re-import of an unchanged file
// cheap. A file imported again is mostly in the order it was written in,
// and so are the records in their stream: the records of runLen rows are
// read as one run of sequences, without headers (settleRuns), from the
// sequence of the run's first record. The rows a run does not settle (a
// record changed since, rows in another order) are read with one direct
// get each (unchangedEach), which also tells the rows without a record.
func (s *Store) unchangedRows(ctx context.Context, subs []subscription.Subscription, out []subscription.UpsertResult, done []bool) (settled, absent []bool, err error) {
	if slices.Contains(done, true) { // settled from memory: the rest, in their order
		var idx []int
		for i := range subs {
			if !done[i] {
				idx = append(idx, i)
			}
		}
		part := make([]subscription.Subscription, len(idx))
		for j, i := range idx {
			part[j] = subs[i]
		}
		partOut := make([]subscription.UpsertResult, len(idx))
		st, ab, err := s.unchangedRows(ctx, part, partOut, make([]bool, len(part)))
		if err != nil {
			return nil, nil, err
		}
		settled, absent = slices.Clone(done), make([]bool, len(subs))
		for j, i := range idx {
			settled[i], absent[i], out[i] = st[j], ab[j], partOut[j]
		}
		return settled, absent, nil
	}
	settled = make([]bool, len(subs))
	if err := s.settleRuns(ctx, subs, out, settled); err != nil {
		return nil, nil, err
	}
	var rest []int
	for i := range subs {
		if !settled[i] {
			rest = append(rest, i)
		}
	}
	absent = make([]bool, len(subs))
	if len(rest) == 0 {
		return settled, absent, nil
	}
	part := make([]subscription.Subscription, len(rest))
	for j, i := range rest {
		part[j] = subs[i]
	}
	partOut := make([]subscription.UpsertResult, len(rest))
	st, ab, err := s.unchangedEach(ctx, part, partOut)
	if err != nil {
		return nil, nil, err
	}
	for j, i := range rest {
		settled[i], absent[i] = st[j], ab[j]
		if st[j] {
			out[i] = partOut[j]
		}
	}
	return settled, absent, nil
}

// runLen is the rows whose records settleRuns reads as one run: a record
// out of place costs at most the rest of its run a direct get each.
const runLen = 32

// settleRuns settles the unchanged rows of subs whose records lie in the
// stream in the rows' order: the last record of each run's first row is
// read with its headers (a batched direct get of the runs' first rows),
// which gives its sequence, then the run's records from there without
// headers (a batched direct get by sequence), the n-th taken for the run's
// n-th row. Without headers an answer does not say its subject; the data
// key that a record names does (see unchangedEach): a record's key always
// names the record's own subscription, so a record whose key names the row
// is that row's record, and the last one, since the bucket keeps one
// message per subject. A row counts as unchanged only when the digest of
// its data under that key is the record's digest; a wrong guess only
// leaves the row unsettled.
func (s *Store) settleRuns(ctx context.Context, subs []subscription.Subscription, out []subscription.UpsertResult, settled []bool) error {
	firsts := make([]string, 0, len(subs)/runLen+1)
	for i := 0; i < len(subs); i += runLen {
		firsts = append(firsts, subsPfx+subs[i].ID)
	}
	recs, err := lastMsgs(ctx, s.nc, subsStream, firsts)
	if err != nil {
		return fmt.Errorf("read subscriptions: %w", err)
	}
	var runs []run
	var starts []int // each run's first row
	for k, f := range firsts {
		m, ok := recs[f]
		if !ok || m.deleted {
			continue
		}
		start := k * runLen
		n := min(runLen, len(subs)-start)
		runs = append(runs, run{m.seq, m.seq + uint64(n) - 1})
		starts = append(starts, start)
	}
	olds := make([]*stored, len(subs))
	want := map[uint64]string{} // data key sequence -> the row's subscription
	for c := 0; c < len(runs); c += runsInFlight {
		part := runs[c:min(c+runsInFlight, len(runs))]
		reqs := make([][]byte, len(part))
		for i, r := range part {
			var err error
			if reqs[i], err = json.Marshal(bareGet{Seq: r.first, Batch: int(r.last-r.first) + 1, NoHeaders: true}); err != nil {
				return err
			}
		}
		answers, err := bareBatches(ctx, s.nc, subsStream, reqs, part)
		if err != nil {
			return fmt.Errorf("read subscriptions: %w", err)
		}
		for k, r := range part {
			start := starts[c+k]
			for j, d := range answers[k] {
				if j > int(r.last-r.first) {
					break
				}
				rec, err := unmarshalFingerprint(d)
				if err != nil || rec.KeySeq == 0 {
					continue // not the row's record, or one the full read must see
				}
				if _, dup := want[rec.KeySeq]; dup && j > 0 {
					continue // runs overlap: a run's first record is known to be its row's
				}
				olds[start+j] = &rec
				want[rec.KeySeq] = subs[start+j].ID
			}
		}
	}
	keys, err := keysBySeqBare(ctx, s.nc, want)
	if err != nil {
		return fmt.Errorf("read data keys: %w", err)
	}
	for i, x := range subs {
		old := olds[i]
		if old == nil || keys[old.KeySeq] == nil || want[old.KeySeq] != x.ID {
			continue
		}
		keep, err := shred.Usage(old.Record)
		if err != nil {
			continue
		}
		fp, err := shred.Fingerprint(keys[old.KeySeq], subscription.KeepUsage(x, keep))
		if err != nil {
			return err
		}
		if shred.SameData(old.Record, fp) {
			settled[i] = true
			out[i] = subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: subscription.DateFromOrdinal(old.End)}
		}
	}
	return nil
}

// unchangedEach is unchangedRows with one direct get per record, all sent
// before any answer is awaited and answered without headers (no_hdr): a
// record written in an atomic batch carries the batch's headers, and the
// server rebuilds every header of a batched read's answer one at a time,
// which cost more than the rest of the read. The data keys the records
// name are read in runs of near sequences, also without headers, so that
// an answer does not say its sequence: the run's n-th answer is taken for
// its n-th sequence, and a key message names its subscription, which must
// be the row's. A row counts as unchanged only when the digest of its data
// under that key is the stored record's digest, which no other key can
// give: a wrong guess (a gap in the run) only sends the row to the full
// read. Without headers an answer has no revision either; only a written
// row needs one, and the full read gives it.
func (s *Store) unchangedEach(ctx context.Context, subs []subscription.Subscription, out []subscription.UpsertResult) (settled, absent []bool, err error) {
	data := make([][]byte, 0, len(subs))
	found := make([]bool, 0, len(subs))
	for part := range slices.Chunk(subs, multiLastMax) { // answers of a bounded size in flight
		reqs := make([][]byte, len(part))
		for i, x := range part {
			if reqs[i], err = json.Marshal(bareGet{LastFor: subsPfx + x.ID, NoHeaders: true}); err != nil {
				return nil, nil, err
			}
		}
		d, f, err := bareGets(ctx, s.nc, subsStream, reqs)
		if err != nil {
			return nil, nil, fmt.Errorf("read subscriptions: %w", err)
		}
		data, found = append(data, d...), append(found, f...)
	}
	settled = make([]bool, len(subs))
	absent = make([]bool, len(subs))
	olds := make([]*stored, len(subs))
	want := map[uint64]string{} // data key sequence -> the subscription whose record names it
	for i, x := range subs {
		if !found[i] {
			absent[i] = true
			continue
		}
		if len(data[i]) == 0 {
			continue // a delete marker: the full read gives its revision
		}
		r, err := unmarshalFingerprint(data[i])
		if err != nil || r.KeySeq == 0 {
			continue // the full read says why, or finds the key of an earlier version
		}
		olds[i] = &r
		want[r.KeySeq] = x.ID
	}
	keys, err := keysBySeqBare(ctx, s.nc, want)
	if err != nil {
		return nil, nil, fmt.Errorf("read data keys: %w", err)
	}
	for i, x := range subs {
		old := olds[i]
		if old == nil || want[old.KeySeq] != x.ID || keys[old.KeySeq] == nil {
			continue // no record, or a key sequence that another row's record names too
		}
		keep, err := shred.Usage(old.Record)
		if err != nil {
			continue
		}
		fp, err := shred.Fingerprint(keys[old.KeySeq], subscription.KeepUsage(x, keep))
		if err != nil {
			return nil, nil, err
		}
		if shred.SameData(old.Record, fp) {
			settled[i] = true
			out[i] = subscription.UpsertResult{Change: subscription.Unchanged, PreviousEndDate: subscription.DateFromOrdinal(old.End)}
		}
	}
	return settled, absent, nil
}

// bareGet is a direct get request for the last message on a subject, or
// for sequences from Seq on NextFor, with or without its headers.
type bareGet struct {
	Seq       uint64 `json:"seq,omitempty"`
	LastFor   string `json:"last_by_subj,omitempty"`
	NextFor   string `json:"next_by_subj,omitempty"`
	Batch     int    `json:"batch,omitempty"`
	NoHeaders bool   `json:"no_hdr,omitempty"`
}

// bareGets sends reqs (direct gets of one message each) to stream, all
// before any answer is awaited, and returns each answer's payload; found is
// false where the server has no such message.
func bareGets(ctx context.Context, nc *nats.Conn, stream string, reqs [][]byte) (data [][]byte, found []bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	inbox := nc.NewInbox() + "."
	msgs := make(chan *nats.Msg, len(reqs))
	sub, err := nc.ChanSubscribe(inbox+"*", msgs)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, r := range reqs {
		if err := nc.PublishRequest(apiDirectGet+stream, inbox+strconv.Itoa(i), r); err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", stream, err)
		}
	}
	data = make([][]byte, len(reqs))
	found = make([]bool, len(reqs))
	for range reqs {
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("read %s: %w", stream, ctx.Err())
		}
		i, err := strconv.Atoi(strings.TrimPrefix(m.Subject, inbox))
		if err != nil || i < 0 || i >= len(reqs) {
			return nil, nil, fmt.Errorf("read %s: an answer to no request (%s)", stream, m.Subject)
		}
		if st := m.Header.Get("Status"); st != "" {
			if st != "404" {
				return nil, nil, fmt.Errorf("read %s: status %s %s", stream, st, m.Header.Get("Description"))
			}
			continue
		}
		data[i], found[i] = m.Data, true
	}
	return data, found, nil
}

// keysBySeqBare reads the data keys at the sequences of want (sequence ->
// the subscription whose record names it) as keysBySeq does, but without
// headers, and returns the key of each sequence whose answer is a data key
// of that subscription (see unchangedRows for why that is enough).
func keysBySeqBare(ctx context.Context, nc *nats.Conn, want map[uint64]string) (map[uint64][]byte, error) {
	seqs := slices.Sorted(maps.Keys(want))
	runs := runsOf(seqs)
	out := make(map[uint64][]byte, len(seqs))
	for c := 0; c < len(runs); c += runsInFlight {
		part := runs[c:min(c+runsInFlight, len(runs))]
		reqs := make([][]byte, len(part))
		for i, r := range part {
			var err error
			if reqs[i], err = json.Marshal(bareGet{Seq: r.first, Batch: int(r.last-r.first) + 1, NextFor: KeysSubject, NoHeaders: true}); err != nil {
				return nil, err
			}
		}
		answers, err := bareBatches(ctx, nc, KeysStream, reqs, part)
		if err != nil {
			return nil, err
		}
		for i, r := range part {
			for j, d := range answers[i] {
				q := r.first + uint64(j)
				if id, ok := want[q]; ok {
					if k := openKeyMsg(d, id); k != nil {
						out[q] = k
					}
				}
			}
		}
	}
	return out, nil
}

// bareBatches sends reqs (batched direct gets without headers, of the
// sequences of runs) to stream, all before any answer is awaited, and
// returns each one's payloads in the order the server sent them.
func bareBatches(ctx context.Context, nc *nats.Conn, stream string, reqs [][]byte, runs []run) ([][][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	inbox := nc.NewInbox() + "."
	answers := 0 // at most: a run's messages and its end
	for _, r := range runs {
		answers += int(r.last-r.first) + 2
	}
	msgs := make(chan *nats.Msg, answers) // room for every answer: a full channel drops them
	sub, err := nc.ChanSubscribe(inbox+"*", msgs)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, r := range reqs {
		if err := nc.PublishRequest(apiDirectGet+stream, inbox+strconv.Itoa(i), r); err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
	}
	out := make([][][]byte, len(reqs))
	for open := len(reqs); open > 0; {
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s: %w", stream, ctx.Err())
		}
		i, err := strconv.Atoi(strings.TrimPrefix(m.Subject, inbox))
		if err != nil || i < 0 || i >= len(reqs) {
			return nil, fmt.Errorf("read %s: an answer to no request (%s)", stream, m.Subject)
		}
		if st := m.Header.Get("Status"); st != "" {
			switch st {
			case "204", "404": // end of a batch; none found
				open--
				continue
			default:
				return nil, fmt.Errorf("read %s: status %s %s", stream, st, m.Header.Get("Description"))
			}
		}
		out[i] = append(out[i], m.Data)
	}
	return out, nil
}

// readStored reads the stored records of ids (with their sealed part when
// sealed is set) and the data keys they name in batches: olds[i] is nil when there is no readable record (errs[i] says
// why when there is one that does not decode), revs[i] is the record's
// revision (0: none), keys[i] is nil when there is no record or its key is
// gone.
func (s *Store) readStored(ctx context.Context, ids []string, sealed bool) (olds []*stored, revs []uint64, keys [][]byte, errs []error, err error) {
	recSubj := make([]string, len(ids))
	for i, id := range ids {
		recSubj[i] = subsPfx + id
	}
	recs, err := lastMsgs(ctx, s.nc, subsStream, recSubj)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("read subscriptions: %w", err)
	}
	olds = make([]*stored, len(ids))
	revs = make([]uint64, len(ids))
	keys = make([][]byte, len(ids))
	errs = make([]error, len(ids))
	var seqs []uint64
	var legacy []string
	for i, id := range ids {
		m, ok := recs[recSubj[i]]
		if !ok {
			continue
		}
		revs[i] = m.seq
		if m.deleted {
			continue
		}
		decode := unmarshalFingerprint
		if sealed {
			decode = unmarshalStored
		}
		r, err := decode(m.data)
		if err != nil {
			errs[i] = err
			continue
		}
		olds[i] = &r
		if r.KeySeq != 0 {
			seqs = append(seqs, r.KeySeq)
		} else {
			legacy = append(legacy, KeysSubjectPrefix+id)
		}
	}
	byseq, err := keysBySeq(ctx, s.nc, seqs)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("read data keys: %w", err)
	}
	var bysubj map[string]lastMsg
	if len(legacy) > 0 {
		if bysubj, err = lastMsgs(ctx, s.nc, KeysStream, legacy); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("read data keys: %w", err)
		}
	}
	for i, id := range ids {
		switch r := olds[i]; {
		case r == nil:
		case r.KeySeq != 0:
			keys[i] = openKeyMsg(byseq[r.KeySeq], id)
		default:
			if m, ok := bysubj[KeysSubjectPrefix+id]; ok {
				keys[i] = m.data
			}
		}
	}
	return olds, revs, keys, errs, nil
}

// readMany reads the subscriptions of ids with batched reads; ok[i] is
// false when the i-th is absent or its key is gone.
func (s *Store) readMany(ctx context.Context, ids []string) (subs []subscription.Subscription, ok []bool, errs []error, err error) {
	olds, _, keys, errs, err := s.readStored(ctx, ids, true)
	if err != nil {
		return nil, nil, nil, err
	}
	subs = make([]subscription.Subscription, len(ids))
	ok = make([]bool, len(ids))
	for i := range ids {
		if olds[i] == nil || keys[i] == nil {
			continue
		}
		subs[i], errs[i] = shred.OpenSubscription(keys[i], olds[i].Record)
		ok[i] = errs[i] == nil
	}
	return subs, ok, errs, nil
}

// runsOf groups sorted sequences into runs that one request can read: gaps
// of at most runGap, spans below multiLastMax. Sequence 0 (none) is left out.
func runsOf(seqs []uint64) []run {
	var runs []run
	for _, q := range seqs {
		if q == 0 {
			continue
		}
		if n := len(runs); n > 0 && q <= runs[n-1].last+runGap && q-runs[n-1].first < multiLastMax {
			runs[n-1].last = q
			continue
		}
		runs = append(runs, run{q, q})
	}
	return runs
}
