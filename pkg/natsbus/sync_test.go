package natsbus_test

import (
	"context"
	"testing"
	"time"

	"renewals/pkg/natsbus"
)

// TestEmbeddedServerSyncsEveryWrite: the embedded server's JetStream syncs
// every write before it acknowledges it, unless an interval is configured.
func TestEmbeddedServerSyncsEveryWrite(t *testing.T) {
	for _, tc := range []struct {
		interval     time.Duration
		always       bool
		wantInterval time.Duration
	}{
		{0, true, 0},
		{2 * time.Minute, false, 2 * time.Minute},
	} {
		dir := t.TempDir()
		bus, err := natsbus.Open(context.Background(), natsbus.Config{
			Listen: "127.0.0.1:-1", StoreDir: dir, SyncInterval: tc.interval,
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg := bus.Server.JetStreamConfig()
		bus.Close()
		if cfg == nil {
			t.Fatal("the embedded server runs no JetStream")
		}
		if cfg.SyncAlways != tc.always || (!tc.always && cfg.SyncInterval != tc.wantInterval) {
			t.Errorf("SyncInterval %v: JetStream sync always %v every %v, want always %v every %v",
				tc.interval, cfg.SyncAlways, cfg.SyncInterval, tc.always, tc.wantInterval)
		}
	}
}
