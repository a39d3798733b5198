//go:build integration

package tests

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestDurabilityKill9 (issue 2, "Must show" 2): write, FLUSH, kill -9 the daemon, restart; every
// flushed byte is there. A local model file holds what the volume must contain, so every earlier
// round is verified again after every restart.
func TestDurabilityKill9(t *testing.T) {
	const (
		rounds = 20
		size   = 32 << 20
		writes = 8 // per round
		maxLen = 256 << 10
	)
	d := startDaemon(t)
	d.CreateVolume("dur", "32M")
	model := make([]byte, size)
	modelPath := filepath.Join(t.TempDir(), "model.raw")
	seed := uint64(20261124)
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))

	for round := range rounds {
		pattern := byte(0x10 + round*11%0xe0) // never 0, differs between neighbouring rounds
		var cmds []string
		for w := range writes {
			length := 1 + r.Int64N(maxLen)
			off := r.Int64N(size - length + 1)
			switch {
			case w == 0 && round%4 == 0: // the last byte
				off, length = size-1, 1
			case w == 1 && round%5 == 0: // zeroes over data
				cmds = append(cmds, fmt.Sprintf("write -z %d %d", off, length))
				clear(model[off : off+length])
				continue
			}
			fua := ""
			if w%3 == 2 {
				fua = "-f "
			}
			cmds = append(cmds, fmt.Sprintf("write %s-P %#x %d %d", fua, pattern, off, length))
			for i := off; i < off+length; i++ {
				model[i] = pattern
			}
		}
		uri := d.UnixURI("dur")
		if round%2 == 1 {
			uri = d.TCPURI("dur")
		}
		qemuIO(t, uri, append(cmds, "flush")...)

		d.Kill()
		d.Restart()

		if err := os.WriteFile(modelPath, model, 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out := runStatus(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", modelPath, d.UnixURI("dur")); code != 0 {
			t.Fatalf("round %d: after kill -9 and restart the volume differs from what was flushed (exit %d):\n%s\nround's writes: %q",
				round, code, out, cmds)
		}
	}
}
