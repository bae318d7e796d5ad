package api

import (
	"strings"

	"renewals/pkg/subscription"
)

// Record is a subscription as the API returns it: the import's flat field
// names, so that what GET returns can be PUT back unchanged.
func Record(s subscription.Subscription) map[string]any {
	r := map[string]any{
		"subscription_id": s.ID,
		"end_date":        s.EndDate.String(),
		"status":          string(cmpOr(s.Status, subscription.StatusActive)),
	}
	set := func(k, v string) {
		if v != "" {
			r[k] = v
		}
	}
	set("customer_account", s.CustomerAccount)
	set("customer_name", s.CustomerName)
	set("product", s.Product)
	if s.Seats != nil {
		r["seats"] = *s.Seats
	}
	if s.SeatsAssigned != nil {
		r["seats_assigned"] = *s.SeatsAssigned
	}
	set("access_model", string(s.AccessModel))
	set("term", s.Term)
	set("start_date", s.StartDate.String())
	set("cm_name", s.ContractManager.Name)
	set("cm_email", s.ContractManager.Email)
	set("cm_phone", s.ContractManager.Phone)
	set("pa_name", s.PrimaryAdmin.Name)
	set("pa_email", s.PrimaryAdmin.Email)
	set("sa_emails", strings.Join(s.SecondaryAdmins, ";"))
	set("timezone", s.Timezone)
	set("locale", s.Locale)
	set("reseller_rep", s.ResellerRep)
	set("contract_number", s.ContractNumber)
	set("autorenew_date", s.AutorenewDate.String())
	set("team", s.Team)
	set("quote_number", s.QuoteNumber)
	set("quote_expiry", s.QuoteExpiry.String())
	set("quote_url", s.QuoteURL)
	return r
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}
