//go:build !faultpause

package cli

// faultPause is nil in the binary users run: the notifier never stops at a
// step of the send protocol. The fault tests build the binary with the tag
// faultpause instead (faultpause_on.go).
func faultPause(Env) func(step string) { return nil }
