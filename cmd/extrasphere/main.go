// Command extrasphere is both the Extrasphere daemon (`extrasphere serve`)
// and its CLI, which talks to the daemon's HTTP+JSON API.
//
// Exit codes: 0 success, 1 error, 2 usage error. Errors are printed as
// "extrasphere: <message>" on stderr, never as a stack trace.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the CLI with args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "extrasphere: %v\n", err)
		if ue.cmd != "" {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", ue.cmd)
		}
		return exitUsage
	}
	fmt.Fprintf(stderr, "extrasphere: %v\n", err)
	return exitError
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct {
	cmd string // command path for the hint, e.g. "extrasphere volume create"
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmdPath, format string, a ...any) error {
	return &usageError{cmd: cmdPath, err: fmt.Errorf(format, a...)}
}
