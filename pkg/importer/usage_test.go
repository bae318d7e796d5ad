package importer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"renewals/pkg/subscription"
)

// usageStore is memStore with the reads ImportUsage needs.
type usageStore struct{ memStore }

func (m *usageStore) Get(_ context.Context, id string) (subscription.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[id]
	if !ok {
		return s, subscription.ErrNotFound
	}
	return s, nil
}

func (m *usageStore) EndingBetween(_ context.Context, from, to subscription.Date, fn func(subscription.Subscription) error) error {
	m.mu.Lock()
	var subs []subscription.Subscription
	for _, s := range m.subs {
		if !s.EndDate.Before(from) && !s.EndDate.After(to) {
			subs = append(subs, s)
		}
	}
	m.mu.Unlock()
	for _, s := range subs {
		if err := fn(s); err != nil {
			return err
		}
	}
	return nil
}

// The day-month order of the usage export's last-used dates is decided as an
// import's is: by the first date that can only be read one way, and the
// dates before it wait; a file that never decides is refused, unless the
// order is given.
func TestImportUsageDateOrder(t *testing.T) {
	asOf := subscription.MustDate("2027-06-01")
	for _, tc := range []struct {
		name, rows string
		order      DateFormat
		unused60   int    // 3 April is 59 days before asOf, 4 March 89
		err        string // "" for none
	}{
		{"decided by a later row", "1,03/04/2027\n1,03/04/2027\n1,25/04/2027\n", DateAuto, 0, ""},
		{"decided month first", "1,03/04/2027\n1,04/25/2027\n", DateAuto, 1, ""},
		{"given", "1,03/04/2027\n1,03/04/2027\n", DateMDY, 2, ""},
		{"never decided", "1,03/04/2027\n1,04/04/2027\n", DateAuto, 0, "03/04/2027 could be 3 April 2027 or 4 March 2027"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &usageStore{}
			if _, err := st.Upsert(context.Background(), []subscription.Subscription{{ID: "1", EndDate: subscription.MustDate("2027-12-31")}}); err != nil {
				t.Fatal(err)
			}
			in := strings.NewReader("subscription_id,last_used\n" + tc.rows)
			opts := UsageOptions{Store: st, AsOf: asOf}
			opts.DateFormat = tc.order
			rep, err := ImportUsage(context.Background(), in, opts)
			if tc.err != "" {
				if !errors.Is(err, ErrInvalidFile) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "--date-format") {
					t.Fatalf("err = %v, want a file error with %q", err, tc.err)
				}
				if got := st.subs["1"].Usage; got != nil {
					t.Errorf("usage %+v stored from a file that was refused", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := st.subs["1"].Usage
			if rep.Counted != rep.Rows || u == nil || u.Unused30 != rep.Rows || u.Unused60 != tc.unused60 {
				t.Errorf("report %+v, usage %+v: want every row counted, %d unused for 60 days", rep, u, tc.unused60)
			}
		})
	}
}

// Progress is called every ProgressEvery rows and once at the end, and the
// end does not repeat a call that already gave the total.
func TestImportUsageProgress(t *testing.T) {
	for _, tc := range []struct {
		rows, every int
		want        string
	}{{0, 2, "[0]"}, {3, 10, "[3]"}, {4, 2, "[2 4]"}, {5, 2, "[2 4 5]"}} {
		rows, want := tc.rows, tc.want
		st := &usageStore{}
		if _, err := st.Upsert(context.Background(), []subscription.Subscription{{ID: "1", EndDate: subscription.MustDate("2027-12-31")}}); err != nil {
			t.Fatal(err)
		}
		in := "subscription_id,days_inactive\n" + strings.Repeat("1,40\n", rows)
		var got []int
		opts := UsageOptions{Store: st, AsOf: subscription.MustDate("2027-06-01")}
		opts.ProgressEvery = tc.every
		opts.Progress = func(n int) { got = append(got, n) }
		if _, err := ImportUsage(context.Background(), strings.NewReader(in), opts); err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
		if fmt.Sprint(got) != want {
			t.Errorf("%d rows: progress calls %v, want %s", rows, got, want)
		}
	}
}

// A subscription whose usage rows are all rejected keeps the counts it had:
// a bad row reports itself, it never stores zeros over earlier counts.
func TestImportUsageRejectedRowsKeepCounts(t *testing.T) {
	before := &subscription.SeatUsage{AsOf: subscription.MustDate("2027-05-01"), Users: 5, Unused30: 2, Unused60: 1}
	st := &usageStore{}
	if _, err := st.Upsert(context.Background(), []subscription.Subscription{
		{ID: "1", EndDate: subscription.MustDate("2027-12-31"), Usage: before},
		{ID: "2", EndDate: subscription.MustDate("2027-12-31")},
	}); err != nil {
		t.Fatal(err)
	}
	in := strings.NewReader("subscription_id,days_inactive,last_used\n1,abc,\n1,,31/31/2027\n2,40,\n")
	rep, err := ImportUsage(context.Background(), in, UsageOptions{Store: st, AsOf: subscription.MustDate("2027-06-01")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rejected != 2 || rep.Counted != 1 {
		t.Errorf("report %+v: want 2 rejected, 1 counted", rep)
	}
	if got := st.subs["1"].Usage; got == nil || *got != *before {
		t.Errorf("subscription 1's usage %+v after only rejected rows, want it kept: %+v", got, before)
	}
	if got := st.subs["2"].Usage; got == nil || got.Users != 1 || got.Unused30 != 1 {
		t.Errorf("subscription 2's usage %+v, want 1 user unused for 30 days", got)
	}
}
