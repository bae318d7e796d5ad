// Package subscription is the domain of renewals: subscriptions, the contacts
// in their roles, renewal milestones, the notice key and the rule that says
// when a notice is due. It imports no infrastructure; the stores, the message
// bus and the mailer depend on it, never the other way round.
package subscription

import (
	"fmt"
	"strings"
)

// Status is where a subscription stands in its renewal.
type Status string

// The statuses a subscription can have. Only active subscriptions get notices.
const (
	StatusActive            Status = "active"
	StatusRenewalInProgress Status = "renewal_in_progress"
	StatusCancelled         Status = "cancelled"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusActive, StatusRenewalInProgress, StatusCancelled:
		return true
	}
	return false
}

// AccessModel says how seats are assigned.
type AccessModel string

// The access models of a subscription.
const (
	SingleUser AccessModel = "single-user"
	MultiUser  AccessModel = "multi-user"
)

// Valid reports whether a is empty (unknown) or one of the known models.
func (a AccessModel) Valid() bool {
	return a == "" || a == SingleUser || a == MultiUser
}

// Role is a contact's role on a subscription.
type Role string

// The roles of the vendor's account model. Only the contract manager controls
// billing, and only the contract manager receives renewal notices.
const (
	RoleContractManager Role = "contract_manager"
	RolePrimaryAdmin    Role = "primary_admin"
	RoleSecondaryAdmin  Role = "secondary_admin"
	RoleUser            Role = "user"
)

// Contact is a person in a role. Its fields are personal data: they never go
// into logs or events, and erasure removes them.
type Contact struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
}

// IsZero reports whether the contact has no data at all.
func (c Contact) IsZero() bool { return c == Contact{} }

// Subscription is one software subscription that the reseller looks after.
// Its identity is ID; a new EndDate starts a new term.
type Subscription struct {
	ID              string      `json:"subscription_id"`
	EndDate         Date        `json:"end_date"`
	CustomerAccount string      `json:"customer_account,omitempty"`
	CustomerName    string      `json:"customer_name,omitempty"`
	Product         string      `json:"product,omitempty"`
	Seats           *int        `json:"seats,omitempty"`
	SeatsAssigned   *int        `json:"seats_assigned,omitempty"`
	AccessModel     AccessModel `json:"access_model,omitempty"`
	Term            string      `json:"term,omitempty"`
	StartDate       Date        `json:"start_date,omitzero"`
	Status          Status      `json:"status"`
	Timezone        string      `json:"timezone,omitempty"`
	Locale          string      `json:"locale,omitempty"`
	ResellerRep     string      `json:"reseller_rep,omitempty"`
	// ContractNumber is the vendor's contract that the subscription belongs
	// to; subscriptions of one contract with the same end date and contract
	// manager co-term.
	ContractNumber string `json:"contract_number,omitempty"`
	// AutorenewDate is the day the vendor renews the subscription by itself,
	// when it is set to renew automatically.
	AutorenewDate Date `json:"autorenew_date,omitzero"`
	// Team is the vendor's team (Autodesk's team alias) that holds the
	// subscription.
	Team string `json:"team,omitempty"`
	// Quote is the reseller's renewal quote, when one was made.
	QuoteNumber string `json:"quote_number,omitempty"`
	QuoteExpiry Date   `json:"quote_expiry,omitzero"`
	QuoteURL    string `json:"quote_url,omitempty"`
	// Usage is what the last seat-usage import counted. Only counts are
	// kept, never who the users are. An upsert that carries no usage keeps
	// the stored one (see KeepUsage): only a usage import sets it.
	Usage *SeatUsage `json:"seat_usage,omitempty"`
	// StatusReason says why the status is what it is when a call set it,
	// e.g. "renewing (call of 2027-03-02)"; it holds no personal data.
	StatusReason string `json:"status_reason,omitempty"`

	// Personal data, by role.
	ContractManager Contact  `json:"contract_manager,omitzero"`
	PrimaryAdmin    Contact  `json:"primary_admin,omitzero"`
	SecondaryAdmins []string `json:"secondary_admin_emails,omitempty"`
}

// Personal returns the subscription's personal data: what erasure removes and
// what must never reach a log line or an event.
func (s Subscription) Personal() []string {
	var out []string
	for _, v := range []string{
		s.ContractManager.Name, s.ContractManager.Email, s.ContractManager.Phone,
		s.PrimaryAdmin.Name, s.PrimaryAdmin.Email,
	} {
		if v != "" {
			out = append(out, v)
		}
	}
	return append(out, s.SecondaryAdmins...)
}

// WithoutPersonal returns a copy of s with every personal field cleared.
func (s Subscription) WithoutPersonal() Subscription {
	s.ContractManager = Contact{}
	s.PrimaryAdmin = Contact{}
	s.SecondaryAdmins = nil
	return s
}

// UnusedSeats returns seats minus assigned seats, and false when either is unknown.
func (s Subscription) UnusedSeats() (int, bool) {
	if s.Seats == nil || s.SeatsAssigned == nil {
		return 0, false
	}
	return max(*s.Seats-*s.SeatsAssigned, 0), true
}

// Equal reports whether a and b hold the same data.
func Equal(a, b Subscription) bool {
	return a.ID == b.ID && a.EndDate == b.EndDate && a.CustomerAccount == b.CustomerAccount &&
		a.CustomerName == b.CustomerName && a.Product == b.Product &&
		eqInt(a.Seats, b.Seats) && eqInt(a.SeatsAssigned, b.SeatsAssigned) &&
		a.AccessModel == b.AccessModel && a.Term == b.Term && a.StartDate == b.StartDate &&
		a.Status == b.Status && a.Timezone == b.Timezone && a.Locale == b.Locale &&
		a.ResellerRep == b.ResellerRep && a.StatusReason == b.StatusReason && a.ContractNumber == b.ContractNumber &&
		a.AutorenewDate == b.AutorenewDate && a.Team == b.Team && a.QuoteNumber == b.QuoteNumber &&
		a.QuoteExpiry == b.QuoteExpiry && a.QuoteURL == b.QuoteURL && eqUsage(a.Usage, b.Usage) &&
		a.ContractManager == b.ContractManager &&
		a.PrimaryAdmin == b.PrimaryAdmin && strings.Join(a.SecondaryAdmins, ";") == strings.Join(b.SecondaryAdmins, ";")
}

func eqUsage(a, b *SeatUsage) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func eqInt(a, b *int) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// ValidID reports whether id can name a subscription: 1 to 64 letters, digits,
// '-' or '_'. The limit keeps ids safe as NATS subject tokens, store keys and
// parts of the notice key.
func ValidID(id string) error {
	if len(id) < 1 || len(id) > 64 || strings.TrimLeft(id, idChars) != "" {
		return fmt.Errorf("%q is not a subscription id: use 1 to 64 letters, digits, '-' or '_'", truncate(id, 80))
	}
	return nil
}

// OneLine collapses every run of white space, line breaks included, into one
// space and trims both ends, so that a value put into a header line (an
// email's Subject or To name, a server-sent event's field) can neither end
// it nor start another.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
