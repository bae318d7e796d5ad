package mailer_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/mail"
	"strings"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"renewals/pkg/mailer"
)

// goMailCompose is how the mailer built messages before it wrote them itself:
// a go-mail Msg with the same headers and parts. Compose must write the same
// bytes, so every reader of the old messages reads the new ones alike.
func goMailCompose(t *testing.T, fromAddr string, m mailer.Message, date time.Time) []byte {
	t.Helper()
	oneLine := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	sum := sha256.Sum256([]byte(m.Key.String() + "\x00" + m.Subject + "\x00" + m.Text + "\x00" + m.HTML))
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithBoundary("renewal-"+hex.EncodeToString(sum[:16])))
	msg.SetAddrHeaderFromMailAddress(gomail.HeaderFrom, &mail.Address{Address: fromAddr})
	msg.SetAddrHeaderFromMailAddress(gomail.HeaderTo, &mail.Address{Name: oneLine(m.ToName), Address: m.To})
	msg.Subject(oneLine(m.Subject))
	msg.SetMessageIDWithValue(mailer.MessageID(m.Key, fromAddr))
	msg.SetDateWithValue(date)
	msg.SetGenHeader(gomail.Header(mailer.HeaderNotice), m.Key.String())
	msg.SetGenHeader(gomail.Header("Auto-Submitted"), "auto-generated")
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// randomText draws n pieces from what rendered notices and hostile data hold:
// words, spaces and tabs at line ends, CR, LF and CRLF, '=', leading dots,
// non-ASCII letters, control characters, and lines longer than 76 bytes.
func randomText(r *rand.Rand, n int) string {
	pieces := []string{"word", "Renewal", " ", "  ", "\t", "\n", "\r\n", "\r", "=", "==3D", ".", "..\n", "é", "Zoë", "—", "€", "日本",
		"\x00", "\x7f", "\x1b", "<p>", "&amp;", "\"", "'", ",", "(x)", "@", "?=", "=?UTF-8?q?x?=", "\xff",
		strings.Repeat("x", 75), strings.Repeat("y", 76), strings.Repeat("z ", 40), strings.Repeat("ü", 30)}
	var b strings.Builder
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

func TestComposeWritesWhatGoMailWrote(t *testing.T) {
	date := time.Date(2027, 3, 5, 6, 7, 8, 0, time.FixedZone("", 3600))
	cases := []mailer.Message{
		sample("110001234567"),
		{Key: sample("1").Key, To: "cm@customer.example"}, // no name, empty subject and bodies
		{Key: sample("1").Key, To: "cm@customer.example", ToName: "Zoë Ménard, \"Boss\"", Subject: strings.Repeat("Your subscription ends — please review ", 5),
			Text: "Plain ünïcode.\n.\nA line that starts with a dot. " + strings.Repeat("long line ", 20) + "\n", HTML: "<p>x</p>"},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		m := sample("110001234567")
		m.ToName = randomText(r, r.IntN(8))
		m.Subject = randomText(r, r.IntN(30))
		m.Text = randomText(r, r.IntN(200))
		m.HTML = randomText(r, r.IntN(200))
		cases = append(cases, m)
	}
	for i, m := range cases {
		got, err := mailer.Compose(from, m, date)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("case %d: parse: %v", i, err)
		}
		if to, err := msg.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != m.To {
			t.Errorf("case %d: To = %v (%v), want exactly %s", i, to, err, m.To)
		}
		for _, h := range []string{"Cc", "Bcc"} {
			if _, ok := msg.Header[h]; ok {
				t.Errorf("case %d: message has a %s header", i, h)
			}
		}
		if want := goMailCompose(t, from, m, date); !bytes.Equal(got, want) {
			at := 0
			for at < min(len(got), len(want)) && got[at] == want[at] {
				at++
			}
			from := max(at-120, 0)
			t.Fatalf("case %d (name %q, subject %q): differs from go-mail at byte %d:\ncomposed: %q\ngo-mail:  %q",
				i, m.ToName, m.Subject, at, got[from:min(at+80, len(got))], want[from:min(at+80, len(want))])
		}
	}
}

// FuzzComposeMatchesGoMail compares Compose with go-mail byte for byte on
// arbitrary names, subjects and bodies. Run it with
// go test -fuzz=FuzzComposeMatchesGoMail ./pkg/mailer/.
func FuzzComposeMatchesGoMail(f *testing.F) {
	f.Add("Carla Manager", "Your subscription ends", "Plain text.\n.\nDot.\n", "<p>x</p>")
	f.Add("Zoë \"Boss\"", strings.Repeat("ü ", 50), "trailing \t\r\nlone\rcr\r\x00\n", strings.Repeat("=", 80))
	f.Add("", "", strings.Repeat("x", 75)+" \n"+strings.Repeat("y", 74)+"\t", "\xff\xfe\r\r\n\n")
	date := time.Date(2027, 3, 5, 6, 7, 8, 0, time.FixedZone("", 3600))
	f.Fuzz(func(t *testing.T, name, subject, text, html string) {
		m := sample("110001234567")
		m.ToName, m.Subject, m.Text, m.HTML = name, subject, text, html
		got, err := mailer.Compose(from, m, date)
		if err != nil {
			t.Fatal(err)
		}
		if want := goMailCompose(t, from, m, date); !bytes.Equal(got, want) {
			t.Fatalf("differs from go-mail:\ncomposed: %q\ngo-mail:  %q", got, want)
		}
	})
}

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
