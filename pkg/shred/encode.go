package shred

import (
	"strconv"

	"renewals/pkg/jsonenc"
	"renewals/pkg/subscription"
)

// The stored JSON of a record's clear and personal parts is written by hand,
// without reflection, but byte for byte as encoding/json writes
// subscription.Subscription (without its personal fields) and personal: the
// digest is computed over these bytes, so any other encoding would make
// every stored record look changed. encode_test.go holds the two to that.

// appendClear appends json.Marshal(s.WithoutPersonal()).
func appendClear(b []byte, s *subscription.Subscription) []byte {
	b = append(b, `{"subscription_id":`...)
	b = jsonenc.AppendString(b, s.ID)
	b = append(b, `,"end_date":`...)
	b = appendDate(b, s.EndDate)
	b = appendOptString(b, `,"customer_account":`, s.CustomerAccount)
	b = appendOptString(b, `,"customer_name":`, s.CustomerName)
	b = appendOptString(b, `,"product":`, s.Product)
	if s.Seats != nil {
		b = append(b, `,"seats":`...)
		b = strconv.AppendInt(b, int64(*s.Seats), 10)
	}
	if s.SeatsAssigned != nil {
		b = append(b, `,"seats_assigned":`...)
		b = strconv.AppendInt(b, int64(*s.SeatsAssigned), 10)
	}
	b = appendOptString(b, `,"access_model":`, string(s.AccessModel))
	b = appendOptString(b, `,"term":`, s.Term)
	if !s.StartDate.IsZero() {
		b = append(b, `,"start_date":`...)
		b = appendDate(b, s.StartDate)
	}
	b = append(b, `,"status":`...)
	b = jsonenc.AppendString(b, string(s.Status))
	b = appendOptString(b, `,"timezone":`, s.Timezone)
	b = appendOptString(b, `,"locale":`, s.Locale)
	b = appendOptString(b, `,"reseller_rep":`, s.ResellerRep)
	return append(b, '}')
}

// appendPersonal appends json.Marshal(personal{CM: s.ContractManager, PA:
// s.PrimaryAdmin, SA: s.SecondaryAdmins}).
func appendPersonal(b []byte, s *subscription.Subscription) []byte {
	b = append(b, '{')
	sep := false
	field := func(name string) {
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = append(b, name...)
	}
	if !s.ContractManager.IsZero() {
		field(`"cm":`)
		b = appendContact(b, s.ContractManager)
	}
	if !s.PrimaryAdmin.IsZero() {
		field(`"pa":`)
		b = appendContact(b, s.PrimaryAdmin)
	}
	if len(s.SecondaryAdmins) > 0 {
		field(`"sa":[`)
		for i, a := range s.SecondaryAdmins {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, a)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendContact(b []byte, c subscription.Contact) []byte {
	n := len(b)
	b = appendOptString(b, `,"name":`, c.Name)
	b = appendOptString(b, `,"email":`, c.Email)
	b = appendOptString(b, `,"phone":`, c.Phone)
	if len(b) == n {
		return append(b, "{}"...)
	}
	b[n] = '{' // the first field's comma opens the object
	return append(b, '}')
}

// appendOptString appends name and s's JSON string unless s is empty
// (omitempty).
func appendOptString(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return jsonenc.AppendString(append(b, name...), s)
}

// appendDate appends the JSON string of d.MarshalText: YYYY-MM-DD, or "" for
// the zero Date.
func appendDate(b []byte, d subscription.Date) []byte { return jsonenc.AppendString(b, d.String()) }
