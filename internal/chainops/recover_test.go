package chainops

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/sparse"
)

// The operations themselves run through the engine's tests (the real
// Host). These cover the recovery helpers the engine calls at open, from
// files alone.

// newChain makes volume v in dir: a flat base and one delta over it.
func newChain(t *testing.T, dir string) datastore.VolumeFiles {
	t.Helper()
	const size = 1 << 20
	desc := filepath.Join(dir, "v.vmdk")
	if err := flat.Create(desc, size, flat.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f := datastore.VolumeFiles{Name: "v", DescriptorPath: desc, Size: size,
		Chain: datastore.ChainFiles{Base: desc, BaseOwn: true, NextDelta: 1}}
	path, err := createDeltaFile(f, dir, layer{path: desc}, size)
	if err != nil {
		t.Fatal(err)
	}
	f.Chain.Deltas, f.Chain.Own, f.Chain.NextDelta = []string{path}, 1, 2
	return f
}

func TestRecoverTopLeavesAWritableTop(t *testing.T) {
	dir := t.TempDir()
	f := newChain(t, dir)
	got, fixed, err := RecoverTop(f, dir)
	if err != nil || fixed || len(got.Chain.Deltas) != 1 {
		t.Fatalf("an unnamed top: fixed %v, deltas %v, %v; want it left as it is", fixed, got.Chain.Deltas, err)
	}
}

// A snapshot that named the top and crashed before its new delta existed
// is completed: a new delta over the named layer takes the writes.
func TestRecoverTopCompletesASnapshot(t *testing.T) {
	dir := t.TempDir()
	f := newChain(t, dir)
	ext, err := sparse.Open(f.Chain.Deltas[0], false)
	if err != nil {
		t.Fatal(err)
	}
	top := layer{path: f.Chain.Deltas[0], own: true, delta: ext}
	if err := top.setSnapshot("s1", time.Now()); err != nil {
		t.Fatal(err)
	}
	cid := ext.CID()
	ext.Close()

	got, fixed, err := RecoverTop(f, dir)
	if err != nil || !fixed {
		t.Fatalf("a named top: fixed %v, %v; want a new delta", fixed, err)
	}
	if len(got.Chain.Deltas) != 2 || got.Chain.Own != 2 || got.Chain.NextDelta != 3 {
		t.Fatalf("chain after recovery: %+v", got.Chain)
	}
	nd, err := sparse.Open(got.Chain.Deltas[1], true)
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	if p := nd.Parent(); p.CID != cid || p.FileNameHint != filepath.Base(f.Chain.Deltas[0]) {
		t.Errorf("new delta's parent %+v, want the named layer (CID %08x)", p, cid)
	}
	if name, _ := (layer{path: got.Chain.Deltas[1], delta: nd}).snapshot(); name != "" {
		t.Errorf("the new top is named %q", name)
	}
}

func TestTemporarySnapshots(t *testing.T) {
	for name, want := range map[string]bool{"migrate-7": true, "backup-3": true, "backup": false, "s1": false} {
		if got := temporary(name, []string{"backup-"}); got != want {
			t.Errorf("temporary(%q) = %v, want %v", name, got, want)
		}
	}
}
