package engine

import (
	"bytes"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// A pivot that ends without a commit runs its undo steps once, newest
// first, and puts the stack back over the layers it began with; the
// volume reads what it read before.
func TestPivotAbortRestoresStack(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	want := bytes.Repeat([]byte{9}, 4096)
	writeThrough(t, e, "v", want, 0)
	v := e.volumes["v"]

	v.snapMu.Lock()
	p, err := e.beginPivot(v)
	if err != nil {
		t.Fatal(err)
	}
	before := p.layers
	var ran []int
	p.onAbort(func() { ran = append(ran, 1) })
	p.onAbort(func() { ran = append(ran, 2) })
	other := memdev.New(1<<20, false)
	p.install(other, func(f *datastore.VolumeFiles) { f.Chain.Deltas = append(f.Chain.Deltas, "x") })
	e.mu.Lock()
	moved := v.layers == other
	e.mu.Unlock()
	if !moved {
		t.Fatal("install did not record the new layers")
	}
	p.end()
	p.end() // a second end does nothing
	v.snapMu.Unlock()

	if !slices.Equal(ran, []int{2, 1}) {
		t.Fatalf("undo steps ran %v, want [2 1] once", ran)
	}
	e.mu.Lock()
	back, deltas := v.layers == before, len(v.files.Chain.Deltas)
	e.mu.Unlock()
	if !back || deltas != 0 {
		t.Fatalf("after the abort: layers back %v, %d deltas in the files (want the layers and 0)", back, deltas)
	}
	if got := readThrough(t, e, "v", 4096, 0); !bytes.Equal(got, want) {
		t.Fatal("the volume does not read its data after the aborted pivot")
	}
}

// A committed pivot keeps its change and runs no undo step.
func TestPivotCommitKeeps(t *testing.T) {
	e := openEngine(t, t.TempDir())
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	v := e.volumes["v"]
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	p, err := e.beginPivot(v)
	if err != nil {
		t.Fatal(err)
	}
	undone := false
	p.onAbort(func() { undone = true })
	p.install(p.layers, nil)
	p.commit()
	p.end()
	if undone {
		t.Fatal("a committed pivot ran its undo step")
	}
}
