package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// lockDataDir creates dir when missing and takes an exclusive lock on
// <dir>/lock for as long as the process runs, so that two servers never share one data dir (and so one
// embedded NATS store and outbox). The lock file names its holder; a second
// server reads it and says who holds the dir. The kernel drops the lock when
// the holder exits, however it exits.
func lockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create the data dir %s: %v; set RENEWALS_DATA_DIR to a writable directory", dir, err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open %s (%v): set RENEWALS_DATA_DIR to a writable directory", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("the data dir %s is in use by %s: stop that server first, or give this one its own RENEWALS_DATA_DIR", dir, who)
		}
		return nil, fmt.Errorf("cannot lock %s (%v): set RENEWALS_DATA_DIR to a local, writable directory", path, err)
	}
	host, _ := os.Hostname()
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "renewals process %d on %s (since %s)\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	return func() { _ = f.Close() }, nil
}
