package render

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The clean-ups as they were written first, plainly: the faster ones must
// give the same strings.
var blankLines = regexp.MustCompile(`\n{3,}`)

func tidyPlain(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	return strings.TrimSpace(blankLines.ReplaceAllString(strings.Join(lines, "\n"), "\n\n")) + "\n"
}

func TestTidyMatchesThePlainVersion(t *testing.T) {
	pieces := []string{"word", "Dear Sam,", " ", "  ", "\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r", "\u00a0", "\u0085", "\u2028", "\v", "—", "x\ty", ""}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 20000 {
		var b strings.Builder
		for range r.IntN(20) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		if got, want := tidy([]byte(s)), tidyPlain(s); got != want {
			t.Fatalf("case %d: tidy(%q) = %q, want %q", i, s, got, want)
		}
	}
}
