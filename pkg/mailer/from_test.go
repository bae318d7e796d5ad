package mailer_test

import (
	"net/mail"
	"strings"
	"testing"
	"time"

	"renewals/pkg/mailer"
	"renewals/pkg/subscription"
	"renewals/pkg/testenv"
)

// TestFromDisplayName: a From address with a display name shows the name
// (encoded when it is not ASCII) and keeps the address alone for the
// envelope and the Message-ID.
func TestFromDisplayName(t *testing.T) {
	srv := testenv.SMTP(t)
	cfg, err := mailer.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct{ from, wantName string }{
		{`"Acme Software Ltd" <renewals@acme.example>`, "Acme Software Ltd"},
		{`Zoë's Software <renewals@acme.example>`, "Zoë's Software"},
	} {
		s, err := mailer.NewSMTP(cfg, tc.from, clock)
		if err != nil {
			t.Fatalf("NewSMTP(%s): %v", tc.from, err)
		}
		defer s.Close()
		if err := s.Send(t.Context(), sample("110001234567")); err != nil {
			t.Fatalf("send from %s: %v", tc.from, err)
		}
		got := srv.WaitFor(i+1, 10*time.Second)[i]
		if got.From != "renewals@acme.example" {
			t.Errorf("MAIL FROM = %q, want the address alone", got.From)
		}
		msg, err := got.Parse()
		if err != nil {
			t.Fatal(err)
		}
		a, err := mail.ParseAddress(msg.Header.Get("From"))
		if err != nil || a.Name != tc.wantName || a.Address != "renewals@acme.example" {
			t.Errorf("From %q read back as %+v, %v; want %q <renewals@acme.example>", msg.Header.Get("From"), a, err, tc.wantName)
		}
		if id := msg.Header.Get("Message-ID"); !strings.HasSuffix(id, "@acme.example>") {
			t.Errorf("Message-ID %q does not end in the From domain", id)
		}
	}
	evil := "\"Evil\r\nBcc: x@y.example\" <renewals@acme.example>"
	if _, err := mailer.Compose(evil, sample("1"), time.Now()); err == nil {
		t.Error("Compose: a From name with a line break was accepted")
	}
	if _, err := mailer.NewSMTP(cfg, evil, clock); err == nil {
		t.Error("NewSMTP: a From name with a line break was accepted")
	}
}

// TestMessageIDDomain: the Message-ID ends in the From address's domain, or
// "renewals" when it has none that can stand there, whichever address came
// before.
func TestMessageIDDomain(t *testing.T) {
	key := subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: -14}
	for range 2 {
		for _, tc := range []struct{ from, want string }{
			{"renewals@reseller.example", "renewal.110001234567.2027-03-31.-14@reseller.example"},
			{`"Acme Software Ltd" <renewals@acme.example>`, "renewal.110001234567.2027-03-31.-14@acme.example"},
			{"not an address", "renewal.110001234567.2027-03-31.-14@renewals"},
			{"r@[192.0.2.1]", "renewal.110001234567.2027-03-31.-14@renewals"},
		} {
			if got := mailer.MessageID(key, tc.from); got != tc.want {
				t.Errorf("MessageID(%q) = %q, want %q", tc.from, got, tc.want)
			}
		}
	}
}
