package render

import (
	"regexp"
	"strings"
	"testing"
)

var tidyCases = []struct{ in, want string }{
	{"", "\n"},
	{"Dear Sam,", "Dear Sam,\n"},
	{"Dear Sam,  \t\r\nword", "Dear Sam,\nword\n"},
	{"a\n\n\n\n\nb", "a\n\nb\n"},
	{"a\n  \n\t\n \r\nb", "a\n\nb\n"},
	{"\n\n  a\n\n", "a\n"},
	{"a\r\n\r\n\r\nb\r\n", "a\n\nb\n"},
	{"\u00a0a\u2028", "a\n"},
	{"a\u00a0\nb", "a\u00a0\nb\n"},
	{"x\ty\n\vz", "x\ty\n\vz\n"},
	{"\u00a0\n\n\n\n a", "a\n"},
	{"a\n\n\u00a0\n\n\nb\n\n\n", "a\n\n\u00a0\n\nb\n"},
}

func TestTidy(t *testing.T) {
	for _, tc := range tidyCases {
		if got := tidy([]byte(tc.in)); got != tc.want {
			t.Errorf("tidy(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// lineByLine is tidy as the steps it documents, one after another.
func lineByLine(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.TrimSpace(regexp.MustCompile(`\n{3,}`).ReplaceAllString(strings.Join(lines, "\n"), "\n\n")) + "\n"
}

// FuzzTidy checks that tidy, which rewrites its input in place in one pass,
// does what its steps taken one after another do.
func FuzzTidy(f *testing.F) {
	for _, tc := range tidyCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := tidy([]byte(s)), lineByLine(s); got != want {
			t.Errorf("tidy(%q) = %q, want %q", s, got, want)
		}
	})
}
