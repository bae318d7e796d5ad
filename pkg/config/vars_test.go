package config

import (
	"strings"
	"testing"
)

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
				LogFormat: "json", Targets: tc.target, ResellerName: tc.reseller, ResellerPhone: tc.phone}
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
