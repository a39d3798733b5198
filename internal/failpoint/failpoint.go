// Package failpoint lets crash tests stop the daemon at a named step of a
// long operation, the way bbolt's gofail markers do: the test starts the
// daemon with EXTRASPHERE_FAILPOINTS=name[,name...] and the daemon kills
// itself with SIGKILL when it reaches one of them, so nothing after the
// step runs and no deferred cleanup hides the state a crash leaves.
//
// A name armed as "name=eio" does not kill: the step it marks fails with
// an injected EIO instead (Err), so fault tests can make a syscall that
// the kernel rarely fails (fdatasync) fail on demand, in a unit test or in
// the real daemon.
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Env is the environment variable that arms failpoints.
const Env = "EXTRASPHERE_FAILPOINTS"

// ErrInjected marks an error that an armed "name=eio" failpoint made up;
// it wraps syscall.EIO too, so the code under test handles it as the
// kernel's EIO.
var ErrInjected = errors.New("injected by a failpoint")

// action is what an armed failpoint does.
type action int

const (
	kill    action = iota + 1 // Hit: SIGKILL
	failEIO                   // Err: an injected EIO
)

// Set is the armed failpoints. The zero value (and nil) arms none.
type Set struct {
	armed map[string]action
}

// FromEnv arms what Env lists.
func FromEnv() *Set { return Parse(os.Getenv(Env)) }

// Parse arms a comma-separated list of names; "name=eio" arms name to
// fail with EIO instead of killing.
func Parse(s string) *Set {
	set := &Set{armed: map[string]action{}}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		a := kill
		if base, ok := strings.CutSuffix(n, "=eio"); ok {
			n, a = base, failEIO
		}
		if n != "" {
			set.armed[n] = a
		}
	}
	return set
}

// Armed reports whether name is armed (either way).
func (s *Set) Armed(name string) bool { return s != nil && s.armed[name] != 0 }

// Hit kills the process with SIGKILL if name is armed to kill.
func (s *Set) Hit(name string) {
	if s != nil && s.armed[name] == kill {
		os.Stderr.WriteString("failpoint " + name + ": SIGKILL\n")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// Err returns an injected EIO (ErrInjected and syscall.EIO) if name is
// armed as "name=eio", and nil otherwise.
func (s *Set) Err(name string) error {
	if s != nil && s.armed[name] == failEIO {
		return fmt.Errorf("failpoint %s: %w: %w", name, ErrInjected, syscall.EIO)
	}
	return nil
}
