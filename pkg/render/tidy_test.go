package render

import "testing"

func TestTidy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
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
	} {
		if got := tidy(tc.in); got != tc.want {
			t.Errorf("tidy(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
