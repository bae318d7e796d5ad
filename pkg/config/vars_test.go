package config

import (
	"flag"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryVariableHasAFlag: each variable that serve reads is named by
// exactly one flag's help, and each flag names a known variable.
func TestEveryVariableHasAFlag(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	Flags(fs, func(string) string { return "" })
	named := regexp.MustCompile(`\((RENEWALS_[A-Z_]+)\)$`)
	var flagged []string
	fs.VisitAll(func(f *flag.Flag) {
		m := named.FindStringSubmatch(f.Usage)
		if m == nil {
			t.Errorf("--%s names no variable at the end of its help: %q", f.Name, f.Usage)
			return
		}
		flagged = append(flagged, m[1])
	})
	var want []string
	for _, v := range Variables {
		if v != "RENEWALS_SERVER" && !slices.Contains(reserved, v) {
			want = append(want, v)
		}
	}
	slices.Sort(flagged)
	slices.Sort(want)
	if !slices.Equal(flagged, want) {
		t.Errorf("variables with a flag:\n%v\nwant (Variables less RENEWALS_SERVER and the reserved):\n%v", flagged, want)
	}
}

func TestUnknownNamesTheNearest(t *testing.T) {
	got := Unknown([]string{
		"RENEWALS_WORKRS=8", "RENEWALS_RESELLER_PHNE=01254 301888", "RENEWALS_WORKERS=4",
		"HOME=/root", "RENEWALS_ZZZZZZZZZZZZZZZZZZZZZZ=1",
	})
	want := []string{
		"RENEWALS_RESELLER_PHNE is not a renewals setting and is ignored: did you mean RENEWALS_RESELLER_PHONE?",
		"RENEWALS_WORKRS is not a renewals setting and is ignored: did you mean RENEWALS_WORKERS?",
		"RENEWALS_ZZZZZZZZZZZZZZZZZZZZZZ is not a renewals setting and is ignored: see 'renewals serve --help' for the list",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Unknown:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNotifierNeedsTheReseller(t *testing.T) {
	for _, tc := range []struct {
		name, reseller, phone string
		target                string
		ok                    bool
	}{
		{"no name", "", "01254 301888", "all", false},
		{"no contact", "Acme Software Ltd", "", "all", false},
		{"both", "Acme Software Ltd", "01254 301888", "all", true},
		{"api alone needs neither", "", "", "api", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Config{Timezone: "UTC", Milestones: "90,45,30", Schedule: "0 6 * * *", HTTPAddr: "127.0.0.1:0",
				LogFormat: "json", Targets: tc.target, ResellerName: tc.reseller, ResellerPhone: tc.phone,
				Workers: DefaultWorkers, AckWait: DefaultAckWait, MaxImportBytes: DefaultMaxImportBytes}
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "RENEWALS_RESELLER_NAME") {
				t.Errorf("error %q does not name the variables", err)
			}
		})
	}
}
