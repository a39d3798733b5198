package main

import (
	"log/slog"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/extrasphere/extrasphere/internal/nbd"
)

// nbdLimitFlags are serve's flags for the NBD server's resource limits
// (internal/nbd/limits.go explains each default).
type nbdLimitFlags struct {
	memory        string
	maxConns      int
	maxConnsPerIP int
	memoryBytes   int64 // memory, parsed by check
}

func (l *nbdLimitFlags) register(f *pflag.FlagSet) {
	f.StringVar(&l.memory, "nbd-memory", "", "memory for NBD buffers (write data read ahead, read data waiting for a slow client) "+
		"of all clients together, e.g. 512M; clients wait when it is spent (default 256M, or 1/16 of RAM if less)")
	f.IntVar(&l.maxConns, "nbd-max-conns", 0, "most NBD connections at once (default 1024, or half the open file limit if less)")
	f.IntVar(&l.maxConnsPerIP, "nbd-max-conns-per-client", 0, "most NBD connections from one TCP client address (default 256, or a quarter of --nbd-max-conns if less)")
}

// check validates the flags; a bad value is a usage error.
func (l *nbdLimitFlags) check(cmd string) error {
	if l.memory != "" {
		n, err := parseSize(l.memory)
		if err != nil {
			return usagef(cmd, "--nbd-memory: %v", err)
		}
		if n < nbd.MinMemoryBytes {
			return usagef(cmd, "--nbd-memory %s: at least %dM is needed (two maximal NBD requests)", l.memory, nbd.MinMemoryBytes>>20)
		}
		l.memoryBytes = n
	}
	if l.maxConns < 0 || l.maxConnsPerIP < 0 {
		return usagef(cmd, "--nbd-max-conns and --nbd-max-conns-per-client must be positive")
	}
	return nil
}

// apply sets the limits in o.
func (l *nbdLimitFlags) apply(o nbd.Options) nbd.Options {
	o.MemoryBytes = l.memoryBytes
	o.MaxConns = l.maxConns
	o.MaxConnsPerClient = l.maxConnsPerIP
	return o
}

// raiseOpenFileLimit raises RLIMIT_NOFILE to its hard limit: every volume
// file and every client connection is a descriptor, and the NBD server's
// default connection cap is half of this limit. (The Go runtime does the
// same at start since Go 1.19; the daemon depends on it, so it says so and
// logs the figure.)
func raiseOpenFileLimit(log *slog.Logger) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		log.Warn("read the open file limit", "err", err)
		return
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			log.Warn("raise the open file limit to its hard limit", "limit", r.Max, "err", err)
			return
		}
	}
	log.Info("open file limit", "nofile", r.Cur)
}
