package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"renewals/pkg/subscription"
)

// Lease lets one scheduler replica at a time run a pass. It is a key in a
// JetStream key-value bucket whose entries expire after TTL, so a replica
// that dies holding it blocks the others for at most TTL. The holder renews
// it every TTL/3 while the pass runs.
//
// The lease only saves work: correctness never rests on it. Two replicas
// passing at once publish the same notice keys, the stream drops the repeats
// inside its duplicate window, and the ledger's claim stops a second email
// after that.
type Lease struct {
	kv     jetstream.KeyValue
	holder string
	ttl    time.Duration
	// Wait makes Acquire wait for a held lease instead of failing with
	// ErrLeaseHeld.
	Wait bool
	// own says whether a pass of this process holds the lease; copies of
	// the Lease (one that waits, one that does not) share it.
	own *ownership
}

type ownership struct {
	mu   sync.Mutex
	held bool
}

const (
	leaseKey = "scheduler-pass"
	// doneKey holds the day of the last scheduled pass that finished, for
	// a replica that skipped that day's pass while another held the lease.
	// Like the lease it expires after the TTL: it is read only by replicas
	// waiting for the lease to come free.
	doneKey = "scheduler-done"
)

// NewLease opens (creating when missing) the lease bucket.
// The holder renews it every ttl/3, so ttl must be long enough for a
// renewal to get through: at least a second.
func NewLease(ctx context.Context, js jetstream.JetStream, holder string, ttl time.Duration) (*Lease, error) {
	return NewLeaseReplicas(ctx, js, holder, ttl, 1)
}

// NewLeaseReplicas is NewLease with the bucket kept in replicas copies on a
// NATS cluster.
func NewLeaseReplicas(ctx context.Context, js jetstream.JetStream, holder string, ttl time.Duration, replicas int) (*Lease, error) {
	if ttl < time.Second {
		return nil, fmt.Errorf("scheduler lease TTL %v: use a second or more", ttl)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      "renewals_leases",
		Description: "renewals: which scheduler replica is running a pass",
		TTL:         ttl,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("open lease bucket: %w", err)
	}
	return &Lease{kv: kv, holder: holder, ttl: ttl, own: &ownership{}}, nil
}

// Acquire takes the lease and returns the function that releases it. When
// another replica holds it, Acquire returns ErrLeaseHeld, or with Wait set
// polls until the lease is free or ctx ends.
func (l *Lease) Acquire(ctx context.Context) (release func(), err error) {
	for {
		rev, ok, err := l.take(ctx)
		if err != nil {
			return nil, fmt.Errorf("take scheduler lease: %w", err)
		}
		if ok {
			return l.hold(rev), nil
		}
		if !l.Wait {
			return nil, ErrLeaseHeld
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for scheduler lease: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// take tries once to take the lease: creating its key, or taking back the
// key this process's holder left behind when none of its passes holds it
// now (a pass that failed on an outage could not delete it, and waiting for
// it to expire would hold up that very pass's retries for the whole TTL).
// It reports false when another replica, or a pass of this process, holds
// the lease. The passes of one process take it one at a time.
func (l *Lease) take(ctx context.Context) (rev uint64, ok bool, err error) {
	l.own.mu.Lock()
	defer l.own.mu.Unlock()
	if l.own.held {
		return 0, false, nil
	}
	rev, err = l.kv.Create(ctx, leaseKey, []byte(l.holder))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := l.kv.Get(ctx, leaseKey)
		if gerr != nil || string(e.Value()) != l.holder {
			return 0, false, nil
		}
		// Compare-and-set: another replica that took it since wins.
		if rev, err = l.kv.Update(ctx, leaseKey, []byte(l.holder), e.Revision()); err != nil {
			return 0, false, nil
		}
	}
	if err != nil {
		return 0, false, err
	}
	l.own.held = true
	return rev, true, nil
}

func (l *Lease) hold(rev uint64) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if r, err := l.kv.Update(ctx, leaseKey, []byte(l.holder), rev); err == nil {
					rev = r
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		_ = l.kv.Delete(dctx, leaseKey, jetstream.LastRevision(rev))
		l.own.mu.Lock()
		l.own.held = false
		l.own.mu.Unlock()
	}
}

// held reports whether any holder, this process's passes included, holds
// the lease now.
func (l *Lease) held(ctx context.Context) (bool, error) {
	_, err := l.kv.Get(ctx, leaseKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// markDone records that a scheduled pass for day finished. A waiting
// replica that misses the record (it expires with the TTL) runs the pass
// again, which is safe: the ledger and the stream drop what it repeats.
func (l *Lease) markDone(ctx context.Context, day subscription.Date) error {
	_, err := l.kv.PutString(ctx, doneKey, day.String())
	return err
}

// done reports whether a scheduled pass for day finished within the TTL.
func (l *Lease) done(ctx context.Context, day subscription.Date) (bool, error) {
	e, err := l.kv.Get(ctx, doneKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(e.Value()) == day.String(), nil
}

// pollEvery is how often a replica waiting for the lease looks again: often
// enough to find the done record, which lives for the TTL, well inside it.
func (l *Lease) pollEvery() time.Duration {
	return min(max(l.ttl/10, 100*time.Millisecond), 30*time.Second)
}
