//go:build !faultpause

package cli

import (
	"io"
	"testing"
)

// TestNoFaultPauseForUsers: the binary users run ignores RENEWALS_FAULT_PAUSE;
// only the fault tests' build (tag faultpause) can stop the notifier at a step.
func TestNoFaultPauseForUsers(t *testing.T) {
	env := Env{Getenv: func(string) string { return "after-send" }, Stderr: io.Discard}
	if faultPause(env) != nil {
		t.Fatal("RENEWALS_FAULT_PAUSE=after-send gives the notifier a pause in the binary users run")
	}
}
