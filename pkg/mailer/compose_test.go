package mailer_test

import (
	"bytes"
	"net/mail"
	"strings"
	"testing"
	"time"

	"renewals/pkg/mailer"
)

// TestFromDisplayName: a From address with a display name shows the name
// (encoded when it is not ASCII) and keeps the address alone for the
// envelope and the Message-ID.
func TestFromDisplayName(t *testing.T) {
	for _, tc := range []struct{ from, wantName string }{
		{`"Acme Software Ltd" <renewals@acme.example>`, "Acme Software Ltd"},
		{`Zoë's Software <renewals@acme.example>`, "Zoë's Software"},
	} {
		got, err := mailer.Compose(tc.from, sample("110001234567"), time.Now())
		if err != nil {
			t.Fatalf("Compose(%s): %v", tc.from, err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(got))
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
	if _, err := mailer.Compose("\"Evil\r\nBcc: x@y.example\" <renewals@acme.example>", sample("1"), time.Now()); err == nil {
		t.Error("a From name with a line break was accepted")
	}
}
