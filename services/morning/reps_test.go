package morning

import (
	"strings"
	"testing"
)

func TestParseReps(t *testing.T) {
	reps, err := ParseReps(strings.NewReader("name,email\n# the team\nAnn Rep,ann@reseller.example\n\n\"Bob, Jr\", bob@reseller.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0] != (Rep{"Ann Rep", "ann@reseller.example"}) || reps[1] != (Rep{"Bob, Jr", "bob@reseller.example"}) {
		t.Errorf("reps = %+v", reps)
	}
	for in, line := range map[string]string{
		"Ann Rep\n":                      "line 1",
		"Ann Rep,not-an-address\n":       "line 1",
		"a,a@x.example\nA,b@x.example\n": "line 2",
		"a,a@x.example\n,b@x.example\n":  "line 2",
		"a,\"Ann\" <a@x.example>\n":      "line 1",
	} {
		_, err := ParseReps(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), line) {
			t.Errorf("ParseReps(%q) = %v, want an error naming %s", in, err, line)
		}
	}
}
