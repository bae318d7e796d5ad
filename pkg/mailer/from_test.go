package mailer_test

import (
	"net/mail"
	"strings"
	"testing"
	"time"

	"renewals/pkg/mailer"
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
