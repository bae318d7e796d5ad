package importer

import (
	"net/mail"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"

	"renewals/pkg/subscription"
)

// The fast paths of Validate must agree with the checks they stand in for:
// each accepts only what those accept, with the same result.

func checkFastPaths(t *testing.T, s string) {
	t.Helper()
	if printableASCII(s) {
		if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 || utf8.RuneCountInString(s) != len(s) {
			t.Errorf("printableASCII(%q) but the full checks disagree", s)
		}
	}
	if d, ok := isoDate(s); ok {
		want, err := subscription.ParseDate(s)
		if err != nil || d != want {
			t.Errorf("isoDate(%q) = %v; ParseDate = %v, %v", s, d, want, err)
		}
	} else if len(s) == 10 {
		if _, err := subscription.ParseDate(s); err == nil {
			t.Errorf("isoDate(%q) refused a date ParseDate reads", s)
		}
	}
	if (validID(s) == nil) != (subscription.ValidID(s) == nil) {
		t.Errorf("validID(%q) = %v, subscription.ValidID = %v", s, validID(s), subscription.ValidID(s))
	}
	if plainAddress(s) {
		a, err := mail.ParseAddress(s)
		if err != nil || a.Name != "" || a.Address != s {
			t.Errorf("plainAddress(%q), but mail.ParseAddress = %+v, %v", s, a, err)
		}
	}
}

func TestFastPaths(t *testing.T) {
	for _, s := range []string{
		"", "a", "2027-05-31", "2028-02-29", "2027-02-29", "1900-02-29", "2000-02-29", "0000-01-01", "9999-12-31",
		"2027-13-01", "2027-00-10", "2027-04-31", "2027-04-00", "2027-4-031", "+027-05-31", "2027-05-3a",
		"jane@example.com", "j.a.n.e+tag@sub.example.co.uk", "!#$%&'*+/=?^_`{|}~-@x", ".jane@x", "jane.@x", "ja..ne@x",
		"jane@.x", "jane@x.", "jane@x..y", "@x", "jane@", "a@b@c", "jane @x", "jane@x y", "\"jane\"@x", "jane@[1.2.3.4]",
		"abc-DEF_123", strings.Repeat("9", 64), strings.Repeat("9", 65), "a/b", "a b", "ü",
		"jané@x", "jane@x\x7f", "(c)jane@x", "jane@x(c)", "Jane <jane@x>", "\x00@x", strings.Repeat("x", 300),
	} {
		checkFastPaths(t, s)
	}
}

func TestCommonLocalesAreCanonical(t *testing.T) {
	for l := range commonLocales {
		tag, err := language.Parse(l)
		if err != nil || baseUnd(tag) || tag.String() != l {
			t.Errorf("language.Parse(%q) = %v, %v: not canonical", l, tag, err)
		}
	}
}

func FuzzFastPaths(f *testing.F) {
	for _, s := range []string{"2027-05-31", "jane@example.com", "a.b@c.d", "2028-02-29"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkFastPaths(t, s) })
}

func TestDotAtomByte(t *testing.T) {
	for c := range 256 {
		want := c > ' ' && c < 0x7f && !strings.ContainsRune(`()<>[]:;@\,"`, rune(c))
		if dotAtomByte[c] != want {
			t.Errorf("dotAtomByte[%q] = %v, want %v", rune(c), dotAtomByte[c], want)
		}
	}
}
