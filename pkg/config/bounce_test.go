package config_test

import (
	"strings"
	"testing"
)

// TestBounceSettings: `all` runs the bounce receiver only with an address
// to listen on; the target needs the listen address and the domain; DKIM
// needs both the key file and the selector.
func TestBounceSettings(t *testing.T) {
	c, err := parse(t, nil)
	if err != nil || c.TargetSet["bounces"] {
		t.Errorf("all without RENEWALS_BOUNCE_LISTEN: %v, bounces %v", err, c.TargetSet["bounces"])
	}
	c, err = parse(t, map[string]string{"RENEWALS_BOUNCE_LISTEN": "127.0.0.1:2525", "RENEWALS_BOUNCE_DOMAIN": "bounces.acme.example"})
	if err != nil || !c.TargetSet["bounces"] || !c.TargetSet["notifier"] {
		t.Errorf("all with RENEWALS_BOUNCE_LISTEN: %v, targets %v", err, c.TargetSet)
	}
	c, err = parse(t, nil, "--bounce-domain", "bounces.acme.example", "--bounce-listen", "0.0.0.0:2525", "--target", "bounces")
	if err != nil || c.BounceDomain != "bounces.acme.example" || !c.TargetSet["bounces"] || c.TargetSet["api"] {
		t.Errorf("flags: %v, %+v", err, c.TargetSet)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--target", "bounces"}, "needs RENEWALS_BOUNCE_LISTEN"},
		{map[string]string{"RENEWALS_BOUNCE_LISTEN": "2525"}, nil, "RENEWALS_BOUNCE_LISTEN"},
		{map[string]string{"RENEWALS_BOUNCE_DOMAIN": "not a domain"}, nil, "RENEWALS_BOUNCE_DOMAIN"},
		{map[string]string{"RENEWALS_DKIM_KEY_FILE": "/etc/dkim.pem"}, nil, "RENEWALS_DKIM_SELECTOR"},
	} {
		if _, err := parse(t, tc.env, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: %v, want an error naming %s", tc.env, tc.args, err, tc.want)
		}
	}
}
