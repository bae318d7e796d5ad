package subscription

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Milestones are the days before an end date at which a notice is due, e.g.
// 90, 45 and 30. A negative milestone -N is a post-expiry notice, due N days
// after the end date (-1: the day after). A Milestones value is sorted
// ascending, has no repeats and holds at least one positive milestone.
type Milestones []int

// DefaultMilestones are the vendor's: 90, 45 and 30 days before the end date.
var DefaultMilestones = Milestones{30, 45, 90}

// PostExpiryNoticeDays is how long after its day a post-expiry notice can
// still go: a pass missed on the day heals within this many days, and after
// it the notice is no longer sent.
const PostExpiryNoticeDays = 14

// ParseMilestones parses a comma-separated list of day counts, such as
// "90,45,30" or "90,45,30,-1", in any order.
func ParseMilestones(s string) (Milestones, error) {
	var ms Milestones
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n == 0 || n > 3660 || n < -3660 {
			return nil, fmt.Errorf("milestone %q is not a day count: use whole days from 1 to 3660 before the end date, or -1 to -3660 for days after it, e.g. 90,45,30 or 90,45,30,-1", f)
		}
		ms = append(ms, n)
	}
	slices.Sort(ms)
	ms = slices.Compact(ms)
	if len(ms) == 0 || ms[len(ms)-1] < 1 {
		return nil, fmt.Errorf("no milestone before the end date given: use e.g. 90,45,30")
	}
	return ms, nil
}

// String formats the milestones as the configuration writes them: "90,45,30".
func (ms Milestones) String() string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[len(ms)-1-i] = strconv.Itoa(m)
	}
	return strings.Join(parts, ",")
}

// Max returns the largest milestone: the length of the renewal window.
func (ms Milestones) Max() int { return ms[len(ms)-1] }

// Stage returns the subscription's current stage for the given days left:
// the smallest milestone M with daysLeft <= M. Before the end date only the
// positive milestones count; after it (daysLeft < 0) only the post-expiry
// ones, each for PostExpiryNoticeDays after its day. It returns false when
// no stage is current: before the window opens, after the end date without
// a post-expiry milestone, or once a post-expiry notice's days are over.
func (ms Milestones) Stage(daysLeft int) (int, bool) {
	if daysLeft < 0 {
		for _, m := range ms {
			if m < 0 && daysLeft <= m {
				return m, m-PostExpiryNoticeDays < daysLeft
			}
		}
		return 0, false
	}
	for _, m := range ms {
		if m > 0 && daysLeft <= m {
			return m, true
		}
	}
	return 0, false
}

// Min returns the smallest milestone: negative when there is a post-expiry
// one.
func (ms Milestones) Min() int { return ms[0] }

// NoticeKey names one notice: one subscription, one term (its end date), one
// milestone. Written "<subscription_id>:<end_date>:<milestone>", e.g.
// "110001234567:2027-03-31:45". It is the Nats-Msg-Id of the due event, the
// ledger's key and the X-Renewal-Notice header of the email.
type NoticeKey struct {
	SubscriptionID string
	EndDate        Date
	Milestone      int
}

// String writes the key as "<subscription_id>:<end_date>:<milestone>".
func (k NoticeKey) String() string {
	return k.SubscriptionID + ":" + k.EndDate.String() + ":" + strconv.Itoa(k.Milestone)
}

// ParseNoticeKey reads a key written by NoticeKey.String.
func ParseNoticeKey(s string) (NoticeKey, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return NoticeKey{}, fmt.Errorf("%q is not a notice key: want <subscription_id>:<end_date>:<milestone>", truncate(s, 80))
	}
	if err := ValidID(parts[0]); err != nil {
		return NoticeKey{}, fmt.Errorf("notice key %q: %w", truncate(s, 80), err)
	}
	d, err := ParseDate(parts[1])
	if err != nil {
		return NoticeKey{}, fmt.Errorf("notice key %q: %w", truncate(s, 80), err)
	}
	m, err := strconv.Atoi(parts[2])
	if err != nil || m == 0 {
		return NoticeKey{}, fmt.Errorf("notice key %q: milestone %q is not a day count", truncate(s, 80), parts[2])
	}
	return NoticeKey{parts[0], d, m}, nil
}

// MarshalText writes the key in its string form.
func (k NoticeKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads the key's string form.
func (k *NoticeKey) UnmarshalText(b []byte) error {
	v, err := ParseNoticeKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// Location returns the zone in which the subscription's days are reckoned: its
// own timezone when it names a valid one, else def.
func (s Subscription) Location(def *time.Location) *time.Location {
	if s.Timezone != "" {
		if loc, err := LoadLocation(s.Timezone); err == nil {
			return loc
		}
	}
	return def
}

var zones sync.Map // zone name -> *time.Location

// LoadLocation is time.LoadLocation with a cache: a daily pass over a million
// subscriptions must not read the zone database a million times.
func LoadLocation(name string) (*time.Location, error) {
	if loc, ok := zones.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone: use a name such as Europe/London", truncate(name, 80))
	}
	zones.Store(name, loc)
	return loc, nil
}

// DaysLeft returns the calendar days from the subscription's today to its end
// date, with today reckoned at now in the subscription's zone (def when it
// names none). 0 on the end date itself, negative after it.
func (s Subscription) DaysLeft(now time.Time, def *time.Location) int {
	return Today(now, s.Location(def)).DaysUntil(s.EndDate)
}

// Notice is a notice that is due: which subscription, term and milestone, and
// how many days were left when it was found due.
type Notice struct {
	Key      NoticeKey
	DaysLeft int
}

// Due applies the due rule. A notice is due when the subscription is active,
// its end date has not passed (daysLeft >= 0) or a post-expiry milestone is
// current (see Stage), and its current stage (the
// smallest milestone M with daysLeft <= M) was not yet sent for this term.
// Only the current stage is ever due: a stage passed while no pass ran is not
// sent afterwards, so a subscription first seen 60 days out gets the 90-day
// notice at once, then the 45 and the 30, and never a burst of old ones.
// sent reports whether a notice was already sent; it may be nil.
func Due(s Subscription, daysLeft int, ms Milestones, sent func(NoticeKey) bool) (Notice, bool) {
	if s.Status != StatusActive && s.Status != "" {
		return Notice{}, false
	}
	m, ok := ms.Stage(daysLeft)
	if !ok {
		return Notice{}, false
	}
	k := NoticeKey{SubscriptionID: s.ID, EndDate: s.EndDate, Milestone: m}
	if sent != nil && sent(k) {
		return Notice{}, false
	}
	return Notice{Key: k, DaysLeft: daysLeft}, true
}

// Window returns the end dates a pass must read so that every subscription
// with 0 <= days left <= ms.Max() in any zone is included, given today in the
// default zone. Offsets run from UTC-12 to UTC+14, so at one instant two
// zones' calendar days can differ by two (at 11:00 UTC it is 23:00 the day
// before in Etc/GMT+12 and 01:00 the day after in Pacific/Kiritimati): the
// window is widened by two days at each end and Due filters exactly. With a
// post-expiry milestone the window reaches back over its days too.
func Window(today Date, ms Milestones) (from, to Date) {
	back := 0
	if ms.Min() < 0 {
		back = -ms.Min() + PostExpiryNoticeDays
	}
	return today.AddDays(-2 - back), today.AddDays(ms.Max() + 2)
}

// CompareKeys orders notice keys by subscription, end date, then milestone.
func CompareKeys(a, b NoticeKey) int {
	return cmp.Or(strings.Compare(a.SubscriptionID, b.SubscriptionID),
		cmp.Compare(a.EndDate.Ordinal(), b.EndDate.Ordinal()), cmp.Compare(a.Milestone, b.Milestone))
}
