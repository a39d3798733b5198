package engine

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/cbt"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// cbtDirty returns the dirty 64 KiB blocks of a bitmap as read through the
// volume's export (the gate and everything under it).
func cbtDirty(t *testing.T, e *Engine, vol, bitmap string) map[int64]bool {
	t.Helper()
	ex, release, err := e.OpenExport(t.Context(), vol)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	out := map[int64]bool{}
	size := ex.Device.Size()
	for pos := int64(0); pos < size; {
		ext, err := ex.Device.BlockStatus(t.Context(), cbt.MetaPrefix+bitmap, pos, size-pos)
		if err != nil {
			t.Fatalf("BlockStatus(%s): %v", bitmap, err)
		}
		for _, x := range ext {
			if x.Flags == cbt.StateDirty {
				for b := pos / cbt.Granularity; b <= (pos+x.Length-1)/cbt.Granularity; b++ {
					out[b] = true
				}
			}
			pos += x.Length
		}
	}
	return out
}

// innerContexts are the meta contexts of the stack under the volume's gate.
func innerContexts(t *testing.T, e *Engine, vol string) []string {
	t.Helper()
	e.mu.Lock()
	g := e.volumes[vol].dev
	e.mu.Unlock()
	return g.Current().Caps().MetaContexts
}

// blocks64k is the set of 64 KiB blocks of the byte ranges {off, len}.
func blocks64k(ranges ...[2]int64) map[int64]bool {
	out := map[int64]bool{}
	for _, r := range ranges {
		for b := r[0] / cbt.Granularity; b <= (r[0]+r[1]-1)/cbt.Granularity; b++ {
			out[b] = true
		}
	}
	return out
}

// Writes are tracked exactly across snapshot create and removal, a live
// migration and a clean restart; clear, remove and revert do what they say.
func TestCBTAcrossPivotsAndRestart(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	if _, err := e.AddDatastore(t.Context(), "ds2", filepath.Join(t.TempDir(), "ds2")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, CreateOptions{Name: "v", Size: 16 << 20})
	writeThrough(t, e, "v", make([]byte, 4096), 0) // before tracking: not recorded
	if _, err := e.EnableCBT(t.Context(), "v", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.EnableCBT(t.Context(), "v", "b"); err != nil {
		t.Fatal(err)
	}
	if got, want := innerContexts(t, e, "v"), []string{"base:allocation", "qemu:dirty-bitmap:b", "qemu:dirty-bitmap:cbt"}; !slices.Equal(got, want) {
		t.Errorf("meta contexts under the gate %v, want %v", got, want)
	}
	var written [][2]int64
	write := func(off, n int64) {
		t.Helper()
		writeThrough(t, e, "v", make([]byte, n), off)
		written = append(written, [2]int64{off, n})
	}
	write(1<<20, 4096)
	if _, err := e.CreateSnapshot(t.Context(), []string{"v"}, "s1"); err != nil {
		t.Fatal(err)
	}
	write(5<<20+100<<10, 200<<10)
	ji, err := e.RemoveSnapshot(t.Context(), "v", "s1")
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, e, ji.ID)
	write(9<<20, 512)
	ji, err = e.Migrate(t.Context(), "v", "ds2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if in := waitJob(t, e, ji.ID); in.Error != "" {
		t.Fatalf("migrate: %s", in.Error)
	}
	write(16<<20-4096, 4096)
	want := blocks64k(written...)
	for _, b := range []string{"cbt", "b"} {
		if got := cbtDirty(t, e, "v", b); !maps.Equal(got, want) {
			t.Errorf("bitmap %s after pivots: dirty %v, want %v", b, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
	}

	e.Close()
	e = openEngine(t, dir)
	defer e.Close()
	info, err := e.ListCBT(t.Context(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if info.Recovered || len(info.Bitmaps) != 2 || info.Bitmaps[1].DirtyBytes != int64(len(want))*cbt.Granularity {
		t.Errorf("after a clean restart: %+v", info)
	}
	if got := cbtDirty(t, e, "v", "cbt"); !maps.Equal(got, want) {
		t.Errorf("after a clean restart: dirty %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}

	if _, err := e.ClearCBT(t.Context(), "v", "cbt"); err != nil {
		t.Fatal(err)
	}
	if got := cbtDirty(t, e, "v", "cbt"); len(got) != 0 {
		t.Errorf("after clear: dirty %v", got)
	}
	if err := e.RemoveCBT(t.Context(), "v", "b"); err != nil {
		t.Fatal(err)
	}
	if got, want := innerContexts(t, e, "v"), []string{"base:allocation", "qemu:dirty-bitmap:cbt"}; !slices.Equal(got, want) {
		t.Errorf("meta contexts after rm: %v, want %v", got, want)
	}

	// A revert changes content the tracker never saw: all dirty.
	if _, err := e.CreateSnapshot(t.Context(), []string{"v"}, "s2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.RevertSnapshot(t.Context(), "v", "s2"); err != nil {
		t.Fatal(err)
	}
	if got, want := len(cbtDirty(t, e, "v", "cbt")), 16<<20/cbt.Granularity; got != want {
		t.Errorf("after revert: %d dirty blocks, want all %d", got, want)
	}

	// Removing the volume removes its files; a new one of the name starts bare.
	if err := e.RemoveVolume(t.Context(), "v", false); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "cbt")); len(ents) != 0 {
		t.Errorf("cbt files left after volume rm: %v", ents)
	}
	mustCreate(t, e, CreateOptions{Name: "v", Size: 16 << 20})
	if info, err := e.ListCBT(t.Context(), "v"); err != nil || len(info.Bitmaps) != 0 {
		t.Errorf("new volume v: %+v %v", info, err)
	}
}

func TestCBTErrors(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	if _, err := e.EnableCBT(t.Context(), "nope", ""); !errors.Is(err, errkind.ErrVolumeNotFound) {
		t.Errorf("enable on a missing volume: %v", err)
	}
	if _, err := e.EnableCBT(t.Context(), "v", "bad/name"); !errors.Is(err, errkind.ErrInvalidArgument) {
		t.Errorf("enable with a bad name: %v", err)
	}
	if _, err := e.EnableCBT(t.Context(), "v", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.EnableCBT(t.Context(), "v", "x"); !errors.Is(err, cbt.ErrBitmapExists) {
		t.Errorf("enable twice: %v", err)
	}
	if _, err := e.ClearCBT(t.Context(), "v", "y"); !errors.Is(err, cbt.ErrBitmapNotFound) {
		t.Errorf("clear a missing bitmap: %v", err)
	}
	if err := e.RemoveCBT(t.Context(), "v", "y"); !errors.Is(err, cbt.ErrBitmapNotFound) {
		t.Errorf("remove a missing bitmap: %v", err)
	}
}

// A crash (no Close) loses no write: what was written is dirty after the
// next open, whatever else the activity log adds.
func TestCBTAfterCrash(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	mustCreate(t, e, CreateOptions{Name: "v", Size: 64 << 20})
	if _, err := e.EnableCBT(t.Context(), "v", ""); err != nil {
		t.Fatal(err)
	}
	var written [][2]int64
	for i := range int64(20) {
		off := (i * 7 % 64) << 20
		writeThrough(t, e, "v", make([]byte, 8192), off+i*4096)
		written = append(written, [2]int64{off + i*4096, 8192})
	}
	crash(t, e)
	e2 := openEngine(t, dir)
	defer e2.Close()
	info, err := e2.ListCBT(t.Context(), "v")
	if err != nil || !info.Recovered {
		t.Fatalf("after a crash: %+v %v", info, err)
	}
	got := cbtDirty(t, e2, "v", "cbt")
	for b := range blocks64k(written...) {
		if !got[b] {
			t.Errorf("block %d written before the crash is clean", b)
		}
	}
}

// crash stops an engine the way a kill does as far as tracking goes: the
// devices and the catalog are released (so the next Open can take them)
// but no bitmap is saved.
func crash(t *testing.T, e *Engine) {
	t.Helper()
	e.mu.Lock()
	e.closed = true
	vols := slices.Collect(maps.Values(e.volumes))
	e.mu.Unlock()
	e.jobs.Close()
	for _, v := range vols {
		if v.dev != nil {
			v.dev.Close()
		}
	}
	if err := e.cat.Close(); err != nil {
		t.Fatal(err)
	}
}
