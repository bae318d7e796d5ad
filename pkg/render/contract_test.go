package render_test

import (
	"strings"
	"testing"

	"renewals/pkg/subscription"
)

// TestContractListsEachSubscription: one email for a contract's co-termed
// subscriptions lists each with its own product, seats and usage, in every
// locale, and its key names them all.
func TestContractListsEachSubscription(t *testing.T) {
	r := newRenderer(t)
	for _, locale := range r.Locales() {
		a := sub(locale)
		a.ContractNumber = "7001"
		b := a
		b.ID, b.Product, b.Seats, b.SeatsAssigned = "110007654321", "Render Farm", nil, nil
		b.Usage = &subscription.SeatUsage{AsOf: subscription.MustDate("2027-01-01"), Users: 9, Unused30: 5, Unused60: 3}
		e, err := r.RenderContract([]subscription.Subscription{a, b}, []subscription.Notice{notice(a, 45, 45), notice(b, 45, 45)})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Design Suite, subscription 110001234567", "Seats: 25, 4 unused",
			"Render Farm, subscription 110007654321", "3 seats unused for 60+ days"} {
			if !strings.Contains(e.Text, want) {
				t.Errorf("%s text lacks %q:\n%s", locale, want, e.Text)
			}
		}
		for _, want := range []string{"<td>Design Suite</td><td>110001234567</td><td>25</td><td>4</td>",
			"<td>Render Farm</td><td>110007654321</td><td>not recorded</td><td>3 for 60+ days</td>"} {
			if !strings.Contains(e.HTML, want) {
				t.Errorf("%s HTML lacks %q:\n%s", locale, want, e.HTML)
			}
		}
		if want := "110001234567:2027-03-31:45, 110007654321:2027-03-31:45"; !strings.Contains(e.Text, want) {
			t.Errorf("%s text lacks the keys %q:\n%s", locale, want, e.Text)
		}
	}
}
