package mailer

import (
	"bytes"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"renewals/pkg/subscription"
)

// BenchmarkComposeWorker composes as an SMTP worker does: one composer and
// one buffer reused from message to message.
func BenchmarkComposeWorker(b *testing.B) {
	snd, err := newSender("renewals@reseller.example")
	if err != nil {
		b.Fatal(err)
	}
	m := Message{
		Key:     subscription.NoticeKey{SubscriptionID: "110001234567", EndDate: subscription.MustDate("2027-03-31"), Milestone: 90},
		To:      "cm@customer.example",
		ToName:  "Carla Manager",
		Subject: "Your subscription 110001234567 ends on 31 March 2027",
		Text:    strings.Repeat("Your Suite Pro subscription ends on 31 January 2031, in 30 days.\n\n", 30),
		HTML:    strings.Repeat("<p>Your <strong>Suite Pro</strong> subscription ends on 31 January 2031.</p>\n", 30),
	}
	date := time.Date(2027, 1, 1, 6, 0, 0, 0, time.UTC)
	var c composer
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		if buf, _, err = c.compose(buf[:0], snd, m, date); err != nil {
			b.Fatal(err)
		}
	}
}

// qpReference is what appendQP must write: mime/quotedprintable's Writer
// given the whole text, then closed.
func qpReference(s string) []byte {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	_, _ = w.Write([]byte(s))
	_ = w.Close()
	return buf.Bytes()
}

// qpAlphabet is what trips quoted-printable encoders: white space before
// line breaks and soft breaks, every kind of line break, CR followed by
// bytes that need encoding, '=', non-ASCII and control bytes.
var qpAlphabet = []string{"a", "b", ".", " ", "\t", "\r", "\n", "\r\n", "=", "\x00", "\x7f", "\x80", "\xff", "é", "~", "!", "\x1f",
	strings.Repeat("x", 70), strings.Repeat("y", 73), strings.Repeat("z ", 36), strings.Repeat("w\t", 37)}

func TestAppendQPMatchesMimeQuotedPrintable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	check := func(s string) {
		t.Helper()
		prefix := []byte("prefix")
		got := appendQP(prefix, s)
		if want := qpReference(s); !bytes.Equal(got[len(prefix):], want) {
			t.Fatalf("appendQP(%q):\n got %q\nwant %q", s, got[len(prefix):], want)
		}
	}
	// Every line length around the soft-break points, ended in every way.
	for n := 0; n <= 160; n++ {
		for _, fill := range []string{"x", " ", "\t", "=", "é", "x "} {
			line := strings.Repeat(fill, n)[:n]
			for _, end := range []string{"", " ", "\t", "\n", " \n", "\r", "\r\n", "\t\r\n", "=", "= \n", "\r\x00\n", "\r=\n"} {
				check(line + end)
				check(line + end + line)
			}
		}
	}
	for range 20000 {
		var b strings.Builder
		for range r.IntN(60) {
			b.WriteString(qpAlphabet[r.IntN(len(qpAlphabet))])
		}
		check(b.String())
	}
	// Random bytes of every value.
	for range 5000 {
		p := make([]byte, r.IntN(300))
		for i := range p {
			p[i] = byte(r.UintN(256))
		}
		check(string(p))
	}
}

func TestAllQPLiteral8(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	want := func(s string) bool {
		for i := range 8 {
			if b := s[i]; b < ' ' || b > '~' || b == '=' {
				return false
			}
		}
		return true
	}
	var p [8]byte
	for range 200000 {
		for i := range p {
			p[i] = byte(0x1c + r.UintN(0x66)) // around both edges and '='
			if r.IntN(16) == 0 {
				p[i] = byte(r.UintN(256))
			}
		}
		if got := allQPLiteral8(string(p[:])); got != want(string(p[:])) {
			t.Fatalf("allQPLiteral8(%q) = %v", p, got)
		}
	}
	// Each byte value in each position of an otherwise literal word.
	for pos := range 8 {
		for v := range 256 {
			copy(p[:], "abcdefgh")
			p[pos] = byte(v)
			if got := allQPLiteral8(string(p[:])); got != want(string(p[:])) {
				t.Fatalf("allQPLiteral8(%q) = %v", p, got)
			}
		}
	}
}
