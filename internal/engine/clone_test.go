package engine

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/errkind"
)

// A linked clone reads its origin's snapshot, writes only its own delta,
// protects the origin's layers, and promotion makes it standalone.
func TestCloneAndPromote(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	mustCreate(t, e, CreateOptions{Name: "src", Size: 8 << 20})
	a := bytes.Repeat([]byte{0xa}, 1<<20)
	writeThrough(t, e, "src", a, 0)
	if _, err := e.Clone(t.Context(), "src", "", "c1"); err != nil {
		t.Fatal(err)
	}
	// The origin keeps being written; the clone does not see it.
	writeThrough(t, e, "src", bytes.Repeat([]byte{0xb}, 1<<20), 0)
	if got := readThrough(t, e, "c1", 1<<20, 0); !bytes.Equal(got, a) {
		t.Fatal("clone does not read the origin's snapshot")
	}
	c := bytes.Repeat([]byte{0xc}, 4096)
	writeThrough(t, e, "c1", c, 2<<20)
	if got := readThrough(t, e, "src", 4096, 2<<20); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("a clone write reached the origin")
	}
	if err := e.RemoveVolume(t.Context(), "src", true); !errors.Is(err, errkind.ErrVolumeInUse) || !strings.Contains(err.Error(), "c1") {
		t.Fatalf("removing the origin of a clone: %v", err)
	}
	// qemu-img follows the clone's chain into the origin's directory.
	top := filepath.Join(dir, "datastores/default/c1/c1-000001.vmdk")
	out, err := exec.CommandContext(t.Context(), "qemu-img", "info", "--backing-chain", top).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "../src/src.vmdk") {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}

	// Restart: the clone is rediscovered with its chain.
	e.Close()
	e = openEngine(t, dir)
	defer e.Close()
	ji, err := e.Promote(t.Context(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
		t.Fatalf("promote: %+v %v", fin, err)
	}
	if got := readThrough(t, e, "c1", 1<<20, 0); !bytes.Equal(got, a) {
		t.Fatal("promoted clone lost the shared data")
	}
	if got := readThrough(t, e, "c1", 4096, 2<<20); !bytes.Equal(got, c) {
		t.Fatal("promoted clone lost its own data")
	}
	if err := e.RemoveVolume(t.Context(), "src", true); err != nil {
		t.Fatalf("origin still pinned after promote: %v", err)
	}
	e.Close()
	e = openEngine(t, dir)
	if got := readThrough(t, e, "c1", 1<<20, 0); !bytes.Equal(got, a) {
		t.Fatal("after restart, the promoted clone reads wrong")
	}
}
