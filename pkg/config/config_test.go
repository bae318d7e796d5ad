package config_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"renewals/pkg/config"
)

// parse reads the configuration from env and args as `serve` does, with
// the reseller's details that the emails need.
func parse(t *testing.T, env map[string]string, args ...string) (*config.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c := config.Flags(fs, func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		return map[string]string{"RENEWALS_RESELLER_NAME": "Acme Software Ltd", "RENEWALS_RESELLER_PHONE": "01254 301888"}[k]
	})
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

// TestNATSSync: the embedded server syncs every write unless told an
// interval; anything else stops serve with a sentence.
func TestNATSSync(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string // a duration, or "always"
	}{
		{"", nil, "always"},
		{"2m", nil, "2m0s"},
		{"ALWAYS", nil, "always"},
		{"2m", []string{"--nats-sync", "always"}, "always"},
	} {
		c, err := parse(t, map[string]string{"RENEWALS_NATS_SYNC": tc.env}, tc.args...)
		if err != nil {
			t.Errorf("RENEWALS_NATS_SYNC=%q %v: %v", tc.env, tc.args, err)
			continue
		}
		got := c.NATSSyncInterval.String()
		if c.NATSSyncInterval == 0 {
			got = "always"
		}
		if got != tc.want {
			t.Errorf("RENEWALS_NATS_SYNC=%q %v: %s, want %s", tc.env, tc.args, got, tc.want)
		}
	}
	// A Config built without Flags syncs every write too.
	c, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.NATSSync, c.NATSSyncInterval = "", time.Minute
	if err := c.Validate(); err != nil || c.NATSSyncInterval != 0 {
		t.Errorf("no RENEWALS_NATS_SYNC at all: %v, interval %v, want 0 (always)", err, c.NATSSyncInterval)
	}
	for _, bad := range []string{"never", "0s", "-1m", "2"} {
		if _, err := parse(t, map[string]string{"RENEWALS_NATS_SYNC": bad}); err == nil || !strings.Contains(err.Error(), "RENEWALS_NATS_SYNC") {
			t.Errorf("RENEWALS_NATS_SYNC=%q: %v, want an error naming the variable", bad, err)
		}
	}
}

// TestNotifierAndAPISettings: workers, ack wait, import limit and log level
// come from the environment or their flags, with defaults, and a value that
// does not read or is out of range stops serve with a sentence naming the
// variable.
func TestNotifierAndAPISettings(t *testing.T) {
	c, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 256 || c.AckWait != 30*time.Second || c.MaxImportBytes != 1<<30 || c.Level != zapcore.InfoLevel {
		t.Errorf("defaults: workers %d, ack wait %v, import limit %d, level %v; want 256, 30s, 1 GiB, info",
			c.Workers, c.AckWait, c.MaxImportBytes, c.Level)
	}
	env := map[string]string{"RENEWALS_WORKERS": "8", "RENEWALS_ACK_WAIT": "5s", "RENEWALS_MAX_IMPORT_BYTES": "2000", "RENEWALS_LOG_LEVEL": "debug"}
	if c, err = parse(t, env); err != nil {
		t.Fatal(err)
	}
	if c.Workers != 8 || c.AckWait != 5*time.Second || c.MaxImportBytes != 2000 || c.Level != zapcore.DebugLevel {
		t.Errorf("from the environment: workers %d, ack wait %v, import limit %d, level %v", c.Workers, c.AckWait, c.MaxImportBytes, c.Level)
	}
	if c, err = parse(t, env, "--workers", "2", "--ack-wait", "1m", "--max-import-bytes", "100", "--log-level", "warn"); err != nil {
		t.Fatal(err)
	}
	if c.Workers != 2 || c.AckWait != time.Minute || c.MaxImportBytes != 100 || c.Level != zapcore.WarnLevel {
		t.Errorf("flags over the environment: workers %d, ack wait %v, import limit %d, level %v", c.Workers, c.AckWait, c.MaxImportBytes, c.Level)
	}
	for _, tc := range []struct {
		name, value, want string
	}{
		{"RENEWALS_WORKERS", "many", `RENEWALS_WORKERS "many" is not a whole number`},
		{"RENEWALS_WORKERS", "0", "RENEWALS_WORKERS is 0"},
		{"RENEWALS_ACK_WAIT", "30", `RENEWALS_ACK_WAIT "30" is not a duration`},
		{"RENEWALS_ACK_WAIT", "500ms", "RENEWALS_ACK_WAIT is 500ms"},
		{"RENEWALS_MAX_IMPORT_BYTES", "1GiB", `RENEWALS_MAX_IMPORT_BYTES "1GiB" is not a whole number`},
		{"RENEWALS_MAX_IMPORT_BYTES", "-5", "RENEWALS_MAX_IMPORT_BYTES is -5"},
		{"RENEWALS_GRACE_DAYS", "thirty", `RENEWALS_GRACE_DAYS "thirty" is not a whole number`},
		{"RENEWALS_DRAIN", "10", `RENEWALS_DRAIN "10" is not a duration`},
		{"RENEWALS_LOG_LEVEL", "loud", `RENEWALS_LOG_LEVEL "loud": use debug, info, warn or error`},
	} {
		_, err := parse(t, map[string]string{tc.name: tc.value})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want an error saying %q", tc.name, tc.value, err, tc.want)
		}
	}
}

// TestReplicas: RENEWALS_REPLICAS defaults to 1, takes up to JetStream's 5,
// and more than 1 needs an external NATS (the embedded server is one).
func TestReplicas(t *testing.T) {
	c, err := parse(t, nil)
	if err != nil || c.Replicas != 1 {
		t.Fatalf("default replicas %d, %v; want 1", c.Replicas, err)
	}
	cluster := "nats://a:4222,nats://b:4222,nats://c:4222"
	if c, err = parse(t, map[string]string{"RENEWALS_REPLICAS": "3", "RENEWALS_NATS_URL": cluster}); err != nil || c.Replicas != 3 || c.NATSURL != cluster {
		t.Fatalf("replicas 3 on a cluster: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"RENEWALS_REPLICAS": "3"}, "the embedded NATS server is a single server"},
		{map[string]string{"RENEWALS_REPLICAS": "7", "RENEWALS_NATS_URL": cluster}, "RENEWALS_REPLICAS is 7: give 1 to 5"},
		{map[string]string{"RENEWALS_REPLICAS": "three", "RENEWALS_NATS_URL": cluster}, `RENEWALS_REPLICAS "three" is not a whole number`},
	} {
		if _, err := parse(t, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}
