// Command renewals sends renewal notices for software subscriptions to each
// subscription's contract manager, exactly once. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"renewals/services/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Getenv: os.Getenv, Environ: os.Environ, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
