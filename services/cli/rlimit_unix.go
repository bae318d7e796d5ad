//go:build unix

package cli

import (
	"fmt"
	"syscall"
)

// raiseOpenFiles raises the soft limit on open files to the hard limit and
// returns it. Every HTTP connection takes a descriptor, and so do the NATS
// and store connections and the JetStream files, so the server takes all
// the operator allows; the Go runtime usually did this already at start,
// but a limit the service depends on should not rest on that.
func raiseOpenFiles() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return uint64(lim.Cur), fmt.Errorf("raise the open-file limit from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = want
	}
	return uint64(lim.Cur), nil
}
