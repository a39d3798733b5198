package sparse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/flat"
)

// run runs a command, failing the test on a non-zero exit, and returns
// its stdout.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("%s %q: %v\nstdout: %s\nstderr: %s", name, args, err, out, exit.Stderr)
		}
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return out
}

// qemuIO runs qemu-io on a vmdk with commands; a failed pattern check
// exits non-zero and fails the test.
func qemuIO(t *testing.T, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "vmdk"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := run(t, "qemu-io", append(args, path)...)
	if bytes.Contains(out, []byte("failed")) || bytes.Contains(out, []byte("error")) {
		t.Fatalf("qemu-io %q: %s", cmds, out)
	}
}

// newBase makes a monolithicFlat base volume dir/name.vmdk holding
// content and returns the descriptor path and its CID.
func newBase(t *testing.T, dir, name string, content []byte) (string, uint32) {
	t.Helper()
	desc := filepath.Join(dir, name+".vmdk")
	if err := flat.Create(desc, int64(len(content)), flat.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	flatPath, err := flat.FlatPath(desc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(flatPath, content, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := flat.ReadDescriptor(desc)
	if err != nil {
		t.Fatal(err)
	}
	return desc, d.CID
}

// newDelta creates dir/name over the base at parentPath (same directory,
// "" for none) and returns its path.
func newDelta(t *testing.T, dir, name string, capacity int64, parent ParentRef) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := Create(path, capacity, parent, CreateOptions{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return path
}

func readFileErr(path string) ([]byte, error) { return os.ReadFile(path) }

func openExtent(t *testing.T, path string, readOnly bool) *Extent {
	t.Helper()
	e, err := Open(path, readOnly)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return e
}

// pattern returns n pseudo-random bytes from seed.
func pattern(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], rng.Uint64())
	}
	return p[:n:n]
}

// view reads the whole virtual disk through the extent over parent (the
// parent's content, nil for zeros): the reference model of a chain.
func view(t *testing.T, e *Extent, parent []byte) []byte {
	t.Helper()
	out := make([]byte, e.Capacity())
	for g := range e.Grains() {
		off := g * e.GrainSize()
		p := out[off : off+e.GrainLen(g)]
		if e.Lookup(g).Kind == Unallocated {
			if parent != nil {
				copy(p, parent[off:])
			}
			continue
		}
		if err := e.ReadGrain(t.Context(), g, 0, p); err != nil {
			t.Fatalf("ReadGrain %d: %v", g, err)
		}
	}
	return out
}

// qemuRaw converts a vmdk chain to raw with qemu-img and returns the bytes.
func qemuRaw(t *testing.T, path string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	run(t, "qemu-img", "convert", "-f", "vmdk", "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// firstDiff describes where two buffers differ, for failure messages.
func firstDiff(a, b []byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d (grain %d): %#02x vs %#02x", i, i/(DefaultGrainSectors*sectorSize), a[i], b[i])
		}
	}
	return "identical"
}
