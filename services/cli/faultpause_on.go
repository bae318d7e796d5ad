//go:build faultpause

package cli

import "fmt"

// faultPause reads RENEWALS_FAULT_PAUSE in a binary built with the tag
// faultpause, as the fault tests build it (e2e.Binary); the binary users
// run has no such variable. When the notifier reaches the named step of the
// send protocol it prints "fault-pause <step>" on stderr and stops there for
// good, so a test can SIGKILL it at that exact point.
func faultPause(env Env) func(step string) {
	want := env.Getenv("RENEWALS_FAULT_PAUSE")
	if want == "" {
		return nil
	}
	return func(step string) {
		if step == want {
			fmt.Fprintf(env.Stderr, "fault-pause %s\n", step)
			select {}
		}
	}
}
