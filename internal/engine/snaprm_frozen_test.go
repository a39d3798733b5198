package engine

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Removing snapshots that are not the newest, into the base (s1) and
// into a delta (s3), keeps every other snapshot's content, the live
// content, the chain qemu-img reads, and survives a restart.
func TestRemoveOlderSnapshots(t *testing.T) {
	const size = 8 << 20
	dir := t.TempDir()
	e := openEngine(t, dir)
	mustCreate(t, e, CreateOptions{Name: "v", Size: size})
	r := rand.New(rand.NewPCG(1, 2))
	model := make([]byte, size)
	write := func(off, n int64) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.IntN(256))
		}
		writeThrough(t, e, "v", p, off)
		copy(model[off:], p)
	}
	at := map[string][]byte{}
	for i, s := range []string{"s1", "s2", "s3", "s4"} {
		write(int64(i)<<20+1000, 300<<10)
		write(int64(7-i)<<20, 64<<10) // whole grains
		write(size-100, 100)
		if _, err := e.CreateSnapshot(t.Context(), []string{"v"}, s); err != nil {
			t.Fatal(err)
		}
		at[s] = bytes.Clone(model)
	}
	write(3<<20, 100)

	check := func(e *Engine, when string, snaps ...string) {
		t.Helper()
		if got := readThrough(t, e, "v", size, 0); !bytes.Equal(got, model) {
			t.Fatalf("%s: live content differs", when)
		}
		list, err := e.ListSnapshots(t.Context(), "v")
		if err != nil || len(list) != len(snaps) {
			t.Fatalf("%s: snapshots %+v %v, want %v", when, list, err, snaps)
		}
		for i, s := range snaps {
			if list[i].Name != s {
				t.Fatalf("%s: snapshots %+v, want %v", when, list, snaps)
			}
			// A clone of the snapshot reads what the volume held then.
			c := "c-" + s
			if _, err := e.Clone(t.Context(), "v", s, c); err != nil {
				t.Fatal(err)
			}
			if got := readThrough(t, e, c, size, 0); !bytes.Equal(got, at[s]) {
				t.Fatalf("%s: snapshot %s content changed", when, s)
			}
			if err := e.RemoveVolume(t.Context(), c, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	rm := func(s string) {
		t.Helper()
		ji, err := e.RemoveSnapshot(t.Context(), "v", s)
		if err != nil {
			t.Fatal(err)
		}
		if fin, err := e.WaitJob(t.Context(), ji.ID); err != nil || fin.Error != "" {
			t.Fatalf("rm %s: %+v %v", s, fin, err)
		}
	}
	rm("s3") // s3's layer is a delta: s4's delta merges into it
	check(e, "after rm s3", "s1", "s2", "s4")
	rm("s1") // s1 froze the base: s2's delta merges into the flat
	check(e, "after rm s1", "s2", "s4")
	deltas, _ := filepath.Glob(filepath.Join(dir, "datastores/default/v/v-0*.vmdk"))
	if len(deltas) != 2 {
		t.Fatalf("deltas on disk %v, want 2 (s4's layer and the top)", deltas)
	}

	e.Close()
	e = openEngine(t, dir)
	defer e.Close()
	check(e, "after a restart", "s2", "s4")
	raw := filepath.Join(t.TempDir(), "v.raw")
	top := filepath.Join(dir, "datastores/default/v", filepath.Base(deltas[1]))
	if out, err := exec.CommandContext(t.Context(), "qemu-img", "convert", "-O", "raw", top, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v\n%s", top, err, out)
	}
	if got, _ := os.ReadFile(raw); !bytes.Equal(got, model) {
		t.Fatal("qemu-img reads the chain differently")
	}
}
