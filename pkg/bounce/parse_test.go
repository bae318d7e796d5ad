package bounce

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crlf is the fixture as it comes over SMTP: every line ending in CRLF.
func crlf(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

func TestParseFixtures(t *testing.T) {
	const notice = "110001234567:2027-03-31:90"
	tests := []struct {
		file      string
		kind      Kind
		status    string
		action    string
		standard  bool
		recipient string
		notice    string
		reason    string
	}{
		{"postfix.eml", Hard, "5.1.1", "failed", true, "jo.bloggs@customer.example", notice, "5.1.1 user unknown"},
		{"exim.eml", Hard, "5.1.1", "failed", true, "sam.smith@customer.example", notice, "5.1.1 user unknown"},
		{"exim-legacy.eml", Hard, "5.2.1", "", false, "sam.smith@customer.example", notice, "5.2.1 mailbox disabled"},
		{"m365.eml", Hard, "5.1.10", "failed", true, "pat.doe@customer.example", notice, "5.1.10 recipient not found"},
		{"exchange2010.eml", Hard, "5.1.1", "", false, "pat.doe@corp.example", notice, "5.1.1 user unknown"},
		{"gmail.eml", Hard, "5.1.1", "", false, "kim.lee@gmail.com", "", "5.1.1 user unknown"},
		{"postfix-delay.eml", Soft, "4.4.1", "delayed", true, "jo.bloggs@customer.example", notice, "4.4.1 no answer from the host"},
		{"out-of-office.eml", AutoReply, "", "", false, "", "", "auto-reply"},
	}
	for _, tc := range tests {
		for _, form := range []string{"LF", "CRLF"} {
			t.Run(tc.file+"/"+form, func(t *testing.T) {
				raw := readFixture(t, tc.file)
				if form == "CRLF" {
					raw = crlf(raw)
				}
				rep, err := Parse(bytes.NewReader(raw))
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if rep.Kind != tc.kind || rep.Status != tc.status || rep.Action != tc.action || rep.Standard != tc.standard || rep.Notice != tc.notice {
					t.Errorf("Parse = kind %q status %q action %q standard %v notice %q; want %q %q %q %v %q",
						rep.Kind, rep.Status, rep.Action, rep.Standard, rep.Notice, tc.kind, tc.status, tc.action, tc.standard, tc.notice)
				}
				if tc.recipient != "" && !slices.Contains(rep.Recipients, tc.recipient) {
					t.Errorf("recipients %v do not name %s", rep.Recipients, tc.recipient)
				}
				if got := rep.Reason(); got != tc.reason {
					t.Errorf("Reason() = %q, want %q", got, tc.reason)
				}
				if strings.Contains(rep.Reason(), "@") {
					t.Errorf("Reason() %q holds an address", rep.Reason())
				}
			})
		}
	}
}

func TestParseDiagnostic(t *testing.T) {
	rep, err := Parse(bytes.NewReader(readFixture(t, "postfix.eml")))
	if err != nil {
		t.Fatal(err)
	}
	// Folded over two lines in the report; net/textproto unfolds it.
	if want := "smtp; 550 5.1.1 <jo.bloggs@customer.example>: Recipient address rejected: User unknown in virtual mailbox table"; rep.Diagnostic != want {
		t.Errorf("Diagnostic = %q, want %q", rep.Diagnostic, want)
	}
}

func TestParseRefusesWhatIsNoBounce(t *testing.T) {
	tests := map[string]struct {
		raw  []byte
		says string
	}{
		"malformed report": {readFixture(t, "malformed.eml"), "delivery-status fields cannot be read"},
		"no header":        {[]byte("\x00\x01\x02 not mail at all"), "no readable header"},
		"report without status part": {[]byte("From: MAILER-DAEMON@x.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nhello\r\n--q--\r\n"),
			"without its message/delivery-status part"},
		"ordinary mail": {[]byte("From: someone@customer.example\r\nSubject: Re: your notice\r\n\r\nPlease call me.\r\n"), "neither a delivery-status report"},
		"bounce with no code": {[]byte("From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nSomething went wrong.\r\n"),
			"names no delivery status"},
		"multipart without boundary": {[]byte("From: MAILER-DAEMON@x.example\r\nContent-Type: multipart/report; report-type=delivery-status\r\n\r\n--q\r\n"),
			"MIME parts cannot be read"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rep, err := Parse(bytes.NewReader(tc.raw))
			if !errors.Is(err, ErrUnreadable) {
				t.Fatalf("Parse = %+v, %v; want ErrUnreadable", rep, err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".eml") {
			f.Add(readFixture(f, e.Name()))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := Parse(bytes.NewReader(raw))
		if err != nil {
			if !errors.Is(err, ErrUnreadable) {
				t.Fatalf("error %v does not wrap ErrUnreadable", err)
			}
			return
		}
		switch rep.Kind {
		case Hard, Soft:
			if !statusRE.MatchString(rep.Status) || (rep.Kind == Hard) != (rep.Status[0] == '5') {
				t.Fatalf("kind %s with status %q", rep.Kind, rep.Status)
			}
		case AutoReply, Delivered:
		default:
			t.Fatalf("unknown kind %q", rep.Kind)
		}
	})
}

// BenchmarkParse is the standard library's MIME readers on one Postfix DSN:
// what the receiver spends per bounce.
func BenchmarkParse(b *testing.B) {
	raw := crlf(readFixture(b, "postfix.eml"))
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(raw)); err != nil {
			b.Fatal(err)
		}
	}
}
