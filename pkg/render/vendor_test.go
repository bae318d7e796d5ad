package render_test

import (
	"strings"
	"testing"

	"renewals/pkg/subscription"
)

// TestQuoteAndUsage: a notice names the quote, says until when it is valid
// and links it, or says it expired; and its unused-seats line uses the
// counts of the vendor's usage export, in each locale's date format.
func TestQuoteAndUsage(t *testing.T) {
	r := newRenderer(t)
	for _, tc := range []struct {
		locale, expiry, asOf string
	}{{"en-GB", "30 April 2027", "1 January 2027"}, {"en-US", "April 30, 2027", "January 1, 2027"}} {
		s := sub(tc.locale)
		s.QuoteNumber, s.QuoteExpiry, s.QuoteURL = "Q-2027-118", subscription.MustDate("2027-04-30"), "https://quotes.partner.example/q/118?k=a&b=c"
		s.Usage = &subscription.SeatUsage{AsOf: subscription.MustDate("2027-01-01"), Users: 20, Unused30: 6, Unused60: 4, Unused90: 0}
		e, err := r.Render(s, notice(s, 90, 89))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"Our quote Q-2027-118 is ready for you, valid until " + tc.expiry + ".",
			"View it: https://quotes.partner.example/q/118?k=a&b=c",
			"4 of 25 seats unused for 60+ days, as the vendor's usage report of " + tc.asOf + " shows.",
		} {
			if !strings.Contains(e.Text, want) {
				t.Errorf("%s text lacks %q:\n%s", tc.locale, want, e.Text)
			}
		}
		for _, want := range []string{
			`<a href="https://quotes.partner.example/q/118?k=a&amp;b=c"`, ">View quote Q-2027-118</a>",
			"valid until <strong>" + tc.expiry + "</strong>", "<strong>4 of 25 seats unused for 60+ days</strong>",
		} {
			if !strings.Contains(e.HTML, want) {
				t.Errorf("%s HTML lacks %q", tc.locale, want)
			}
		}
		// 30 days before the end, the quote of 30 April is still open; on
		// 1 May (a notice due with 0 days left of an end on 1 May) it is not.
		s.EndDate = subscription.MustDate("2027-05-01")
		e, err = r.Render(s, notice(s, 30, 0))
		if err != nil {
			t.Fatal(err)
		}
		if want := "Our quote Q-2027-118 expired on " + tc.expiry + ". Ask us for a new one"; !strings.Contains(e.Text, want) || !strings.Contains(e.HTML, "expired on "+tc.expiry) {
			t.Errorf("%s: text lacks %q:\n%s", tc.locale, want, e.Text)
		}
	}
	// Without a quote or usage, neither part appears.
	s := sub("en-GB")
	e, err := r.Render(s, notice(s, 90, 89))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.Text, "QUOTE") || strings.Contains(e.HTML, "quote") || strings.Contains(e.Text, "usage report") {
		t.Errorf("a notice without quote or usage mentions them:\n%s", e.Text)
	}
	if !strings.Contains(e.Text, "you have 4 unused seats out of 25") {
		t.Errorf("without usage, the seats line is the assigned count:\n%s", e.Text)
	}
}
