package render_test

import (
	"reflect"
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

// TestDataHoldsItemFields: Data declares every field of Item, of the same
// type, so that a template reads .Product and the others alike on a notice
// and in range .Contract.Items; and a contract's first item holds the values
// of the notice's own fields.
func TestDataHoldsItemFields(t *testing.T) {
	r := newRenderer(t)
	a := sub("en-GB")
	a.ContractNumber = "7001"
	a.Usage = &subscription.SeatUsage{AsOf: subscription.MustDate("2027-01-01"), Users: 25, Unused30: 5, Unused60: 3}
	b := a
	b.ID = "110007654321"
	d := r.ContractData([]subscription.Subscription{a, b}, []subscription.Notice{notice(a, 45, 45), notice(b, 45, 45)})
	item, data := reflect.ValueOf(d.Contract.Items[0]), reflect.ValueOf(d)
	for i := range item.NumField() {
		f := item.Type().Field(i)
		df, ok := data.Type().FieldByName(f.Name)
		if !ok || df.Type != f.Type || len(df.Index) != 1 {
			t.Errorf("Data lacks Item's field %s %s of its own", f.Name, f.Type)
			continue
		}
		if got, want := data.FieldByIndex(df.Index).Interface(), item.Field(i).Interface(); got != want {
			t.Errorf("Data.%s = %v, its first item's %v", f.Name, got, want)
		}
	}
	if !d.HasSeats || !d.HasUsage {
		t.Errorf("sample lacks seats or usage: %+v", d)
	}
}
