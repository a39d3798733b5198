package engine

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// A volume migrates to another datastore while a writer keeps writing;
// afterwards every byte is there, on the new datastore only, also after
// a restart, and its snapshots came along.
func TestMigrateUnderWrites(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(t.TempDir(), "ds2")
	e := openEngine(t, dir)
	if _, err := e.AddDatastore(t.Context(), "ds2", other); err != nil {
		t.Fatal(err)
	}
	const size = 16 << 20
	mustCreate(t, e, CreateOptions{Name: "m", Size: size})
	model := make([]byte, size)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range model[:4<<20] {
		model[i] = byte(rnd.IntN(256))
	}
	writeThrough(t, e, "m", model[:4<<20], 0)
	if _, err := e.CreateSnapshot(t.Context(), []string{"m"}, "keep"); err != nil {
		t.Fatal(err)
	}
	ex, release, err := e.OpenExport(t.Context(), "m")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards model writes by the writer
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(3, 4))
		for !stop.Load() {
			off := r.Int64N(size/4096) * 4096
			b := bytes.Repeat([]byte{byte(r.IntN(255) + 1)}, 4096)
			if err := ex.Device.WriteAt(t.Context(), b, off, 0); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			copy(model[off:], b)
			mu.Unlock()
		}
	})
	ji, err := e.Migrate(t.Context(), "m", "ds2", 0)
	if err != nil {
		t.Fatal(err)
	}
	fin, err := e.WaitJob(t.Context(), ji.ID)
	stop.Store(true)
	wg.Wait()
	if err != nil || fin.Error != "" {
		t.Fatalf("migrate: %+v %v", fin, err)
	}
	got := make([]byte, size)
	if err := ex.Device.ReadAt(t.Context(), got, 0); err != nil {
		t.Fatal(err)
	}
	release()
	if !bytes.Equal(got, model) {
		t.Fatal("data differs after migration")
	}
	in, _ := e.GetVolume(t.Context(), "m")
	if in.Datastore != "ds2" {
		t.Fatalf("volume on %s", in.Datastore)
	}
	e.Close() // waits for the background removal of the old copy
	if _, err := os.Stat(filepath.Join(dir, "datastores/default/m")); !os.IsNotExist(err) {
		t.Fatalf("old copy still there: %v", err)
	}
	e = openEngine(t, dir)
	defer e.Close()
	if got := readThrough(t, e, "m", size, 0); !bytes.Equal(got, model) {
		t.Fatal("after restart the migrated volume reads wrong")
	}
	snaps, err := e.ListSnapshots(t.Context(), "m")
	if err != nil || len(snaps) != 1 || snaps[0].Name != "keep" {
		t.Fatalf("snapshots after migration: %v %v", snaps, err)
	}
}

// A migration cancelled after reads moved to the copies rolls back
// without losing the grains the top delta allocated meanwhile: the
// original chain put back must know them (it once did not).
func TestMigrateCancelAfterSwitch(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir)
	defer e.Close()
	if _, err := e.AddDatastore(t.Context(), "ds2", filepath.Join(t.TempDir(), "ds2")); err != nil {
		t.Fatal(err)
	}
	const size = 8 << 20
	mustCreate(t, e, CreateOptions{Name: "m", Size: size})
	model := bytes.Repeat([]byte{1}, size)
	writeThrough(t, e, "m", model, 0)
	var id string
	idSet := make(chan struct{})
	e.onStep = func(name string) {
		if name == "consolidate.after-copy" {
			// The rollback merges the delta back: write into the grains
			// allocated after the switch while it runs, and read them.
			for off := int64(0); off < size; off += 256 << 10 {
				writeThrough(t, e, "m", []byte{0xee}, off+1000)
				model[off+1000] = 0xee
			}
			if got := readThrough(t, e, "m", size, 0); !bytes.Equal(got, model) {
				t.Error("during the rollback's merge the volume reads wrong")
			}
			return
		}
		if name != "migrate.after-switch-reads" {
			return
		}
		// New grains in the migration's delta, then cancel.
		for off := int64(0); off < size; off += 256 << 10 {
			b := bytes.Repeat([]byte{byte(off>>18) + 2}, 4096)
			writeThrough(t, e, "m", b, off)
			copy(model[off:], b)
		}
		<-idSet
		if _, err := e.CancelJob(t.Context(), id); err != nil {
			t.Error(err)
		}
	}
	ji, err := e.Migrate(t.Context(), "m", "ds2", 0)
	if err != nil {
		t.Fatal(err)
	}
	id = ji.ID
	close(idSet)
	fin, err := e.WaitJob(t.Context(), ji.ID)
	if err != nil || fin.State != "cancelled" {
		t.Fatalf("migrate: %+v %v, want cancelled", fin, err)
	}
	e.onStep = nil
	if got := readThrough(t, e, "m", size, 0); !bytes.Equal(got, model) {
		t.Fatal("after the rollback the volume lost writes made after the switch")
	}
	in, _ := e.GetVolume(t.Context(), "m")
	if in.Datastore != "default" {
		t.Fatalf("volume on %s after cancel", in.Datastore)
	}
	// A write after the rollback lands too (the chain is sound).
	writeThrough(t, e, "m", []byte{9}, 100)
	model[100] = 9
	if got := readThrough(t, e, "m", size, 0); !bytes.Equal(got, model) {
		t.Fatal("a write after the rollback reads back wrong")
	}
}
