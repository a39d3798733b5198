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

// Snapshots freeze the volume at an instant, survive a restart, revert
// and consolidate away, and qemu-img reads the chain the same way.
func TestSnapshotLifecycle(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	mustCreate(t, e, CreateOptions{Name: "v", Size: 8 << 20})
	a := bytes.Repeat([]byte{0xa}, 1<<20)
	b := bytes.Repeat([]byte{0xb}, 1<<20)
	writeThrough(t, e, "v", a, 0)
	if _, err := e.CreateSnapshot(t.Context(), []string{"v"}, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateSnapshot(t.Context(), []string{"v"}, "s1"); !errors.Is(err, errkind.ErrSnapshotExists) {
		t.Fatalf("duplicate snapshot: %v", err)
	}
	writeThrough(t, e, "v", b, 512<<10) // half over a, half past it
	want := append(append([]byte{}, a[:512<<10]...), b...)
	if got := readThrough(t, e, "v", 3<<19, 0); !bytes.Equal(got, want) {
		t.Fatal("read through the delta is wrong")
	}
	snaps, err := e.ListSnapshots(t.Context(), "v")
	if err != nil || len(snaps) != 1 || snaps[0].Name != "s1" {
		t.Fatalf("list: %v %v", snaps, err)
	}

	// Restart: the chain is rediscovered from the files.
	e.Close()
	e = openEngine(t, dir)
	defer e.Close()
	if got := readThrough(t, e, "v", 3<<19, 0); !bytes.Equal(got, want) {
		t.Fatal("after restart the chain reads wrong")
	}
	top := filepath.Join(dir, "datastores/default/v/v-000001.vmdk")
	out, err := exec.CommandContext(t.Context(), "qemu-img", "info", "--backing-chain", top).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backing file: v.vmdk") {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}

	// Revert drops what was written since s1.
	if _, err := e.RevertSnapshot(t.Context(), "v", "s1"); err != nil {
		t.Fatal(err)
	}
	if got := readThrough(t, e, "v", 3<<19, 0); !bytes.Equal(got[:1<<20], a) || !bytes.Equal(got[1<<20:], make([]byte, 1<<19)) {
		t.Fatal("revert did not restore s1")
	}

	// Remove s1: the delta is merged into the base, live.
	writeThrough(t, e, "v", b, 4<<20)
	ji, err := e.RemoveSnapshot(t.Context(), "v", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
		t.Fatalf("consolidate job: %+v %v", fin, err)
	}
	if snaps, _ := e.ListSnapshots(t.Context(), "v"); len(snaps) != 0 {
		t.Fatalf("snapshots after rm: %v", snaps)
	}
	if got := readThrough(t, e, "v", 1<<20, 4<<20); !bytes.Equal(got, b) {
		t.Fatal("consolidated data lost")
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "datastores/default/v/v-0*.vmdk"))
	if len(matches) != 0 {
		t.Fatalf("deltas left after consolidation: %v", matches)
	}
}
