// Package failpoint lets crash tests stop the daemon at a named step of a
// long operation, the way bbolt's gofail markers do: the test starts the
// daemon with EXTRASPHERE_FAILPOINTS=name[,name...] and the daemon kills
// itself with SIGKILL when it reaches one of them, so nothing after the
// step runs and no deferred cleanup hides the state a crash leaves.
package failpoint

import (
	"os"
	"strings"
	"syscall"
)

// Env is the environment variable that arms failpoints.
const Env = "EXTRASPHERE_FAILPOINTS"

// Set is the armed failpoints. The zero value (and nil) arms none.
type Set struct {
	armed map[string]bool
}

// FromEnv arms what Env lists.
func FromEnv() *Set { return Parse(os.Getenv(Env)) }

// Parse arms a comma-separated list of names.
func Parse(s string) *Set {
	set := &Set{armed: map[string]bool{}}
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			set.armed[n] = true
		}
	}
	return set
}

// Armed reports whether name is armed.
func (s *Set) Armed(name string) bool { return s != nil && s.armed[name] }

// Hit kills the process with SIGKILL if name is armed.
func (s *Set) Hit(name string) {
	if s.Armed(name) {
		os.Stderr.WriteString("failpoint " + name + ": SIGKILL\n")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
