package render

import (
	"testing"

	"renewals/pkg/subscription"
	"renewals/templates"
)

// BenchmarkRenderStandard is BenchmarkRender with every template executed by
// text/template and html/template, as before the fast path: run both in one
// invocation to compare them on the same machine state.
func BenchmarkRenderStandard(b *testing.B) {
	r, err := New(templates.FS, Reseller{Name: "Design Partners Ltd", Phone: "+44 1254 000000", Email: "renewals@partner.example", Website: "www.partner.example"})
	if err != nil {
		b.Fatal(err)
	}
	r.standardOnly = true
	seats, assigned := 25, 21
	s := subscription.Subscription{
		ID: "110001234567", EndDate: subscription.MustDate("2027-03-31"),
		CustomerName: "Acme Engineering", CustomerAccount: "5100000001", Product: "Design Suite",
		Seats: &seats, SeatsAssigned: &assigned, AccessModel: subscription.MultiUser,
		Status: subscription.StatusActive, Locale: "en-GB",
		ContractManager: subscription.Contact{Name: "Carla Manager", Email: "cm@acme.example"},
	}
	n := subscription.Notice{Key: subscription.NoticeKey{SubscriptionID: s.ID, EndDate: s.EndDate, Milestone: 30}, DaysLeft: 30}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Render(s, n); err != nil {
			b.Fatal(err)
		}
	}
}
