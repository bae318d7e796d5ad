package config_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"renewals/pkg/config"
)

// parse reads the configuration from env and args as `serve` does.
func parse(t *testing.T, env map[string]string, args ...string) (*config.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c := config.Flags(fs, func(k string) string { return env[k] })
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c, c.Validate()
}

// TestNATSCreds: a creds file is for an external server, and must be
// readable; the flag overrides the variable.
func TestNATSCreds(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "renewals.creds")
	if err := os.WriteFile(creds, []byte("-----BEGIN NATS USER JWT-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parse(t, map[string]string{"RENEWALS_NATS_URL": "nats://nats.example:4222", "RENEWALS_NATS_CREDS": "/nowhere"}, "--nats-creds", creds)
	if err != nil || c.NATSCreds != creds {
		t.Errorf("--nats-creds %s: %v, creds %q", creds, err, c.NATSCreds)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"RENEWALS_NATS_CREDS": creds}, "set RENEWALS_NATS_URL"},
		{map[string]string{"RENEWALS_NATS_URL": "nats://nats.example:4222", "RENEWALS_NATS_CREDS": creds + ".missing"}, "readable .creds file"},
	} {
		if _, err := parse(t, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.env, err, tc.want)
		}
	}
}
