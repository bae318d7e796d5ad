package console

import (
	"net/url"
	"testing"

	"renewals/pkg/subscription"
)

// A scanned list links to its next page when the page is full or the scan
// stopped, says where it stopped only when the page is not full, and links
// back to the first page only from a later one.
func TestPagerLinks(t *testing.T) {
	end := subscription.MustDate("2027-03-31")
	base := url.Values{"q": {"acme"}}
	for _, c := range []struct {
		name                 string
		full, stopped, after bool
		want                 pager
	}{
		{"last page, first of the list", false, false, false, pager{}},
		{"full", true, false, false, pager{Next: "/subscriptions?page=K&q=acme"}},
		{"stopped before full", false, true, true, pager{Next: "/subscriptions?page=K&q=acme", First: "/subscriptions?q=acme", Searched: end}},
		{"full and stopped", true, true, true, pager{Next: "/subscriptions?page=K&q=acme", First: "/subscriptions?q=acme"}},
	} {
		var p pager
		p.link("/subscriptions", base, "K", end, c.full, c.stopped, c.after)
		if p != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, p, c.want)
		}
	}
	if base.Get("page") != "" {
		t.Errorf("link changed the base query: %v", base)
	}
}
