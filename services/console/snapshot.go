package console

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"renewals/pkg/page"
	"renewals/pkg/subscription"
	"renewals/services/calllist"
)

// The call list and the overview's forecast read the whole renewal window
// (with 100,000 subscriptions, some 11,000 records and their outcomes: two
// to three seconds). The console keeps what they found, so that paging and
// reloading answer from memory:
//
//   - the ranked call list of each filter shown lately (snapshots), read
//     again on the next view once an event said that something changed
//     (an import, a notice outcome) and the snapshot is older than
//     staleFor, so that a stream of events (a pass's thousands of
//     outcomes) costs one read per staleFor, not one per view; or after
//     snapshotTTL; and dropped at once on an erasure, or on an import or
//     erasure made from the console itself;
//   - the overview's board (forecast chart and who cannot be emailed),
//     worked out again in the background after a change, at most once per
//     boardEvery, and shown with the time it was worked out.
//
// An erasure also removes the subscription from the board at once: no
// erased name stays on a page.
const (
	snapshotTTL  = 5 * time.Minute
	staleFor     = 10 * time.Second
	snapshotMax  = 8
	boardEvery   = 15 * time.Second
	boardTimeout = 2 * time.Minute
)

type snapshotKey struct {
	day              subscription.Date // today, when asOf is empty
	asOf             subscription.Date
	rep              string
	minDays, maxDays int
	hasMin, hasMax   bool
}

type snapshot struct {
	entries []calllist.Entry
	at      time.Time
}

type snapshots struct {
	mu      sync.Mutex
	gen     uint64 // bumped by every drop: a read begun before one is not kept
	m       map[snapshotKey]*snapshot
	changed time.Time // the last change an event told of
}

func keyOf(day, asOf subscription.Date, f calllist.Filter) snapshotKey {
	k := snapshotKey{day: day, asOf: asOf, rep: f.ResellerRep}
	if f.MinDays != nil {
		k.minDays, k.hasMin = *f.MinDays, true
	}
	if f.MaxDays != nil {
		k.maxDays, k.hasMax = *f.MaxDays, true
	}
	return k
}

func (s *snapshots) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.m = nil
}

func (s *snapshots) touch(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changed = now
}

// fresh reports whether sn may still be shown at now. s.mu is held.
func (s *snapshots) fresh(sn *snapshot, now time.Time) bool {
	age := now.Sub(sn.at)
	return age < snapshotTTL && (s.changed.Before(sn.at) || age < staleFor)
}

// calllistPage returns one page of the call list from a snapshot, reading
// the list when there is none. Cursors are the Lister's.
func (c *Console) calllistPage(ctx context.Context, asOf subscription.Date, f calllist.Filter, cursor string) (calllist.Page, error) {
	es, err := c.calllistAll(ctx, asOf, f)
	if err != nil {
		return calllist.Page{}, err
	}
	start := 0
	if cursor != "" {
		f, err := page.Decode(cursor, 1)
		if err != nil {
			return calllist.Page{}, err
		}
		start = -1
		for i, e := range es {
			if e.SubscriptionID == f[0] {
				start = i + 1
				break
			}
		}
		if start < 0 {
			return calllist.Page{}, page.ErrCursor
		}
	}
	end := min(start+pageSize, len(es))
	p := calllist.Page{Entries: es[start:end], Total: len(es)}
	if end < len(es) {
		p.Next = page.Encode(es[end-1].SubscriptionID)
	}
	return p, nil
}

func (c *Console) calllistAll(ctx context.Context, asOf subscription.Date, f calllist.Filter) ([]calllist.Entry, error) {
	now := c.Now()
	k := keyOf(c.today(), asOf, f)
	s := &c.snaps
	s.mu.Lock()
	if sn := s.m[k]; sn != nil && s.fresh(sn, now) {
		s.mu.Unlock()
		return sn.entries, nil
	}
	gen := s.gen
	s.mu.Unlock()
	es, err := c.Lister.List(ctx, asOf, f)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == gen {
		if s.m == nil || len(s.m) >= snapshotMax {
			s.m = map[snapshotKey]*snapshot{}
		}
		s.m[k] = &snapshot{es, now}
	}
	return es, nil
}

// board is the overview's slow half.
type board struct {
	at        time.Time
	day       subscription.Date
	forecast  forecastChart
	attention []attention
}

// attention is a call-list entry without its personal data.
type attention struct {
	SubscriptionID, Customer, Reason string
}

type boardState struct {
	mu      sync.Mutex
	cur     *board
	dirty   bool
	running bool
	last    time.Time // when the last refresh started
}

// currentBoard returns the board, working it out now when there is none
// for today, and starting a refresh in the background when it is out of
// date.
func (c *Console) currentBoard(ctx context.Context) *board {
	b := &c.board
	b.mu.Lock()
	cur := b.cur
	if cur != nil && cur.day == c.today() {
		if b.dirty || c.Now().Sub(cur.at) > snapshotTTL {
			c.refreshBoardLocked()
		}
		b.mu.Unlock()
		return cur
	}
	b.mu.Unlock()
	nb := c.workOutBoard(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cur == nil || b.cur.at.Before(nb.at) {
		b.cur = nb
	}
	return b.cur
}

// refreshBoardLocked starts a background refresh unless one runs; a
// refresh starts at most once per boardEvery. b.mu is held.
func (c *Console) refreshBoardLocked() {
	b := &c.board
	if b.running {
		return
	}
	b.running = true
	wait := max(boardEvery-c.Now().Sub(b.last), 0)
	stop := c.Context
	if stop == nil {
		stop = context.Background()
	}
	go func() {
		select { // at most one refresh per boardEvery; none once the server stops
		case <-time.After(wait):
		case <-stop.Done():
			b.mu.Lock()
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Lock()
		b.dirty, b.last = false, c.Now()
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(stop, boardTimeout)
		nb := c.workOutBoard(ctx)
		cancel()
		b.mu.Lock()
		if b.cur == nil || b.cur.at.Before(nb.at) {
			b.cur = nb
		}
		b.running = false
		again := b.dirty
		if again {
			c.refreshBoardLocked()
		}
		b.mu.Unlock()
	}()
}

func (c *Console) workOutBoard(ctx context.Context) *board {
	nb := &board{at: c.Now(), day: c.today()}
	if c.Scheduler != nil {
		chart, err := c.forecast(ctx, nb.day, 90)
		if err != nil {
			c.Log.Warn("console forecast", zap.Error(err))
		}
		nb.forecast = chart
	}
	if c.Lister != nil {
		es, err := c.calllistAll(ctx, subscription.Date{}, calllist.Filter{})
		if err != nil {
			c.Log.Warn("console call list", zap.Error(err))
		}
		for _, e := range es {
			if e.Category != calllist.Unreachable || len(nb.attention) == 10 {
				break
			}
			nb.attention = append(nb.attention, attention{e.SubscriptionID, e.Customer, e.Reason})
		}
	}
	return nb
}

// changed is told of every change: the snapshots are read again soon (at
// once when hard: an erasure, or the console's own import), the board is
// worked out again soon, and an erased subscription leaves the board at
// once.
func (c *Console) changed(erased string, hard bool) {
	c.snaps.touch(c.Now())
	if hard || erased != "" {
		c.snaps.drop()
	}
	b := &c.board
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dirty = true
	if erased != "" && b.cur != nil {
		nb := *b.cur
		nb.attention = nil
		for _, a := range b.cur.attention {
			if a.SubscriptionID != erased {
				nb.attention = append(nb.attention, a)
			}
		}
		b.cur = &nb
	}
	if b.cur != nil {
		c.refreshBoardLocked()
	}
}
