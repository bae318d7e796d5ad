// Package calllist keeps the reseller's call list: the subscriptions in
// their renewal period that someone should phone, most urgent first, each
// with the reason it stands where it does.
//
// The calllist target (Target) follows the notice outcomes and subscription
// changes in the RENEWALS stream with a durable consumer and materialises, per
// subscription, what the emails did (State: notices sent with their dates,
// the last outcome and its reason) into the JetStream key-value bucket
// renewals_calllist. State holds no personal data. The list itself (Lister)
// is assembled at read time, by any API replica: the subscriptions come from
// the Store through its end-date index, the contract manager's name and phone
// are joined from the Store then, and never copied anywhere else.
//
// Rebuilding: the durable consumer's position and the bucket live in the same
// JetStream, and applying an event is idempotent (a State remembers the last
// stream sequence it applied), so a crashed target resumes where it stopped.
// When the bucket is missing at start the target deletes its consumer and
// replays the whole stream into a fresh bucket.
package calllist

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"renewals/pkg/subscription"
)

// Category is why an entry is on the list; categories are listed in this
// order.
type Category string

// The categories, most urgent first.
const (
	// Unreachable: email cannot reach the contract manager (no address, an
	// undeliverable, failed or bounced notice). Phone them.
	Unreachable Category = "unreachable"
	// Lapsed: past the end date, within the grace days, not renewed.
	Lapsed Category = "lapsed"
	// QuoteExpired: the renewal quote expired before the subscription
	// was renewed. Call to send a new one.
	QuoteExpired Category = "quote_expired"
	// Expiring: inside the renewal window, by days left.
	Expiring Category = "expiring"
)

func (c Category) order() int {
	switch c {
	case Callback:
		return 0
	case Unreachable:
		return 1
	case Lapsed:
		return 2
	case QuoteExpired:
		return 3
	}
	return 4
}

// Entry is one line of the call list. It holds the contract manager's name
// and phone, joined from the store at read time: it is never stored or
// published.
type Entry struct {
	Rank           int               `json:"rank"`
	Category       Category          `json:"category"`
	Reason         string            `json:"reason"`
	SubscriptionID string            `json:"subscription_id"`
	CustomerAcct   string            `json:"customer_account,omitempty"`
	Customer       string            `json:"customer"`
	Product        string            `json:"product"`
	EndDate        subscription.Date `json:"end_date"`
	DaysLeft       int               `json:"days_left"`
	Seats          *int              `json:"seats"`
	SeatsAssigned  *int              `json:"seats_assigned"`
	SeatsUnused    *int              `json:"seats_unused"`
	AccessModel    string            `json:"access_model,omitempty"`
	CMName         string            `json:"contract_manager_name"`
	CMPhone        string            `json:"contract_manager_phone"`
	NoticesSent    []SentNotice      `json:"notices_sent"`
	LastOutcome    *LastOutcome      `json:"last_outcome,omitempty"`
	ResellerRep    string            `json:"reseller_rep"`
	// Usage is what the vendor's usage export counted, when imported.
	Usage *subscription.SeatUsage `json:"seat_usage,omitempty"`
	// Quote is the reseller's renewal quote, when one was made.
	Quote *Quote `json:"quote,omitempty"`
	// Stage is the post-expiry stage of a lapsed subscription (expired,
	// suspended, cancelled); RenewBy the last day it can still be renewed.
	Stage   string             `json:"stage,omitempty"`
	RenewBy *subscription.Date `json:"renew_by,omitempty"`
	// LastCall is the latest call of the term; NextTermSeats the seats a
	// seats_changed call asked for.
	LastCall      *LastCall `json:"last_call,omitempty"`
	NextTermSeats *int      `json:"next_term_seats,omitempty"`
}

// Quote is a renewal quote on the list: open until Expiry (zero when not
// known), or expired.
type Quote struct {
	Number string            `json:"number"`
	Expiry subscription.Date `json:"expiry,omitzero"`
	URL    string            `json:"url,omitempty"`
	// Status is "open" or "expired".
	Status string `json:"status"`
}

// The statuses of a Quote.
const (
	QuoteOpen       = "open"
	QuoteStatusGone = "expired"
)

// SentNotice is a notice of the current term that went to the contract
// manager, and the day it went (in the subscription's zone).
type SentNotice struct {
	Milestone int               `json:"milestone"`
	Date      subscription.Date `json:"date"`
}

// LastOutcome is the latest outcome of any notice of the current term.
type LastOutcome struct {
	Milestone int                  `json:"milestone"`
	Outcome   subscription.Outcome `json:"outcome"`
	Reason    string               `json:"reason,omitempty"`
	At        time.Time            `json:"at"`
}

// State is what the target keeps per subscription in the bucket: outcomes
// only, no personal data.
type State struct {
	SubscriptionID string `json:"subscription_id"`
	// Notices holds the latest outcome of each notice seen, by key.
	Notices []NoticeState `json:"notices,omitempty"`
	// Calls holds the latest calls, oldest first (calls.go).
	Calls []CallState `json:"calls,omitempty"`
	// Seq is the last stream sequence applied: an event at or below it is a
	// redelivery and changes nothing.
	Seq uint64 `json:"seq"`
	// Published is what the last renewals.calllist.updated said, so that
	// only changes are published.
	Published *Published `json:"published,omitempty"`
}

// NoticeState is the latest outcome of one notice.
type NoticeState struct {
	EndDate   subscription.Date    `json:"end_date"`
	Milestone int                  `json:"milestone"`
	Outcome   subscription.Outcome `json:"outcome"`
	Reason    string               `json:"reason,omitempty"`
	At        time.Time            `json:"at"`
	Seq       uint64               `json:"seq"`
}

// Published is the content of a calllist.updated event.
type Published struct {
	OnList bool   `json:"on_list"`
	Reason string `json:"reason,omitempty"`
}

// maxNotices bounds the outcomes a State keeps: a few terms' worth.
const maxNotices = 12

// apply records an outcome in s, replacing an older outcome of the same
// notice.
func (s *State) apply(n NoticeState) {
	i := slices.IndexFunc(s.Notices, func(o NoticeState) bool { return o.EndDate == n.EndDate && o.Milestone == n.Milestone })
	if i >= 0 {
		s.Notices[i] = n
	} else {
		s.Notices = append(s.Notices, n)
	}
	if len(s.Notices) > maxNotices {
		slices.SortFunc(s.Notices, func(a, b NoticeState) int { return cmp.Compare(a.Seq, b.Seq) })
		s.Notices = s.Notices[len(s.Notices)-maxNotices:]
	}
}

// Rules are what decides who is on the list.
type Rules struct {
	Milestones subscription.Milestones
	// GraceDays is how long after its end date a lapsed subscription stays.
	GraceDays int
	// Location is the default zone (RENEWALS_TIMEZONE) for subscriptions
	// that name none.
	Location *time.Location
	// PostExpiry are the vendor's stages after the end date
	// (RENEWALS_POST_EXPIRY): a lapsed entry shows its stage and the last
	// day it can be renewed.
	PostExpiry subscription.PostExpiry
}

// today is the day in sub's zone at now, or asOf when set.
func (r Rules) today(sub subscription.Subscription, now time.Time, asOf subscription.Date) subscription.Date {
	if !asOf.IsZero() {
		return asOf
	}
	return subscription.Today(now, sub.Location(r.loc()))
}

func (r Rules) loc() *time.Location {
	if r.Location == nil {
		return time.UTC
	}
	return r.Location
}

// window is the range of end dates that may be on the list on day today in
// the default zone, widened by a day each side for subscriptions in other
// zones; Build decides exactly.
func (r Rules) window(today subscription.Date) (from, to subscription.Date) {
	return today.AddDays(-r.lapsedDays() - 1), today.AddDays(r.Milestones.Max() + 1)
}

// Build returns the entry of sub as of today (the day in the subscription's
// zone), given the outcomes in st (which may be nil), and whether it belongs
// on the list at all. Only active subscriptions whose days left lie in
// [-GraceDays, largest milestone] are on it,
// and not while a callback they asked for is still ahead.
func (r Rules) Build(sub subscription.Subscription, st *State, today subscription.Date) (Entry, bool) {
	days := today.DaysUntil(sub.EndDate)
	if sub.Status != "" && sub.Status != subscription.StatusActive {
		return Entry{}, false
	}
	if days > r.Milestones.Max() || days < -r.lapsedDays() {
		return Entry{}, false
	}
	e := Entry{
		SubscriptionID: sub.ID, CustomerAcct: sub.CustomerAccount, Customer: sub.CustomerName,
		Product: sub.Product, EndDate: sub.EndDate, DaysLeft: days,
		Seats: sub.Seats, SeatsAssigned: sub.SeatsAssigned, AccessModel: string(sub.AccessModel),
		CMName: sub.ContractManager.Name, CMPhone: sub.ContractManager.Phone,
		ResellerRep: sub.ResellerRep, NoticesSent: []SentNotice{},
	}
	unused, known := sub.UnusedSeats()
	if known {
		e.SeatsUnused = &unused
	}
	if sub.Usage != nil {
		u := *sub.Usage
		e.Usage = &u
	}
	if sub.QuoteNumber != "" {
		e.Quote = &Quote{Number: sub.QuoteNumber, Expiry: sub.QuoteExpiry, URL: sub.QuoteURL, Status: QuoteOpen}
		if !sub.QuoteExpiry.IsZero() && sub.QuoteExpiry.Before(today) {
			e.Quote.Status = QuoteStatusGone
		}
	}
	var last *NoticeState
	if st != nil {
		for i, n := range st.Notices {
			if n.EndDate != sub.EndDate {
				continue // an earlier (or corrected) term
			}
			if n.Outcome == subscription.OutcomeSent {
				e.NoticesSent = append(e.NoticesSent, SentNotice{n.Milestone, subscription.Today(n.At, sub.Location(r.loc()))})
			}
			if last == nil || n.Seq > last.Seq {
				last = &st.Notices[i]
			}
		}
	}
	slices.SortFunc(e.NoticesSent, func(a, b SentNotice) int { return cmp.Compare(b.Milestone, a.Milestone) })
	if last != nil {
		e.LastOutcome = &LastOutcome{last.Milestone, last.Outcome, last.Reason, last.At}
	}
	switch {
	case last != nil && last.Outcome == subscription.OutcomeUndeliverable:
		e.Category, e.Reason = Unreachable, cmp.Or(last.Reason, fmt.Sprintf("%d-day notice undeliverable", last.Milestone))
	case last != nil && last.Outcome == subscription.OutcomeBounced:
		e.Category, e.Reason = Unreachable, cmp.Or(last.Reason, fmt.Sprintf("the %d-day notice bounced", last.Milestone))
	case last != nil && last.Outcome == subscription.OutcomeFailed:
		e.Category, e.Reason = Unreachable, fmt.Sprintf("%d-day notice failed: %s", last.Milestone, cmp.Or(last.Reason, "no reason given"))
	case sub.ContractManager.Email == "":
		e.Category, e.Reason = Unreachable, "no contract manager email"
	case days < 0:
		e.Category, e.Reason = Lapsed, "lapsed "+plural(-days, "day")+" ago"
	default:
		e.Category = Expiring
		if days == 0 {
			e.Reason = "expires today"
		} else {
			e.Reason = "expires in " + plural(days, "day")
		}
		if e.Quote != nil && e.Quote.Status == QuoteStatusGone {
			e.Category = QuoteExpired
			e.Reason = fmt.Sprintf("quote %s expired %s; %s", e.Quote.Number, ago(today.DaysUntil(e.Quote.Expiry)), e.Reason)
		}
		if line := sub.UsageLine(); line != "" {
			e.Reason += "; " + line
		} else if known && unused > 0 {
			e.Reason += fmt.Sprintf("; %d of %d seats unused", unused, *sub.Seats)
		}
		if e.Quote != nil && e.Quote.Status == QuoteOpen {
			e.Reason += "; quote " + e.Quote.Number + " open"
			if !e.Quote.Expiry.IsZero() {
				e.Reason += " until " + e.Quote.Expiry.String()
			}
		}
	}
	r.postExpiry(&e, days)
	if !r.applyCalls(&e, st, sub, today) {
		return Entry{}, false
	}
	return e, true
}

// ago says how long ago a day days before today (days <= 0) was.
func ago(days int) string {
	if days == 0 {
		return "today"
	}
	return plural(-days, "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// Sort orders entries: unreachable first, then lapsed, then the rest; within
// each, by days left, then by subscription id; and numbers them from 1.
func Sort(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int {
		return cmp.Or(
			cmp.Compare(a.Category.order(), b.Category.order()),
			cmp.Compare(a.DaysLeft, b.DaysLeft),
			strings.Compare(a.SubscriptionID, b.SubscriptionID),
		)
	})
	for i := range es {
		es[i].Rank = i + 1
	}
}

// Filter narrows the list.
type Filter struct {
	// ResellerRep keeps only this rep's entries (compared without case);
	// empty keeps all.
	ResellerRep string
	// MinDays and MaxDays bound days left, inclusive, when set.
	MinDays, MaxDays *int
}

// Keep reports whether e passes the filter.
func (f Filter) Keep(e Entry) bool {
	if f.ResellerRep != "" && !strings.EqualFold(f.ResellerRep, e.ResellerRep) {
		return false
	}
	if f.MinDays != nil && e.DaysLeft < *f.MinDays {
		return false
	}
	if f.MaxDays != nil && e.DaysLeft > *f.MaxDays {
		return false
	}
	return true
}

var emailLike = regexp.MustCompile(`[^\s<>()\[\],;:"']+@[^\s<>()\[\],;:"']+`)

// scrub removes anything shaped like an email address from a reason before
// it goes into an event: an SMTP server's reply may quote the recipient.
func scrub(s string) string {
	return emailLike.ReplaceAllString(s, "<address>")
}
