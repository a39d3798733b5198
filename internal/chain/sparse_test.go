package chain

import (
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/sparse"
)

// newSparse creates an empty sparse extent of size bytes in dir.
func newSparse(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := sparse.Create(path, size, sparse.ParentRef{}, sparse.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

func openSparse(t *testing.T, path string, readOnly bool) *sparse.Extent {
	t.Helper()
	e, err := sparse.Open(path, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The chain as the engine opens a volume with a snapshot: a flat base, a
// frozen delta opened read-only and the top delta, both real sparse
// extents in files, through the Extent adapter. The frozen delta holds
// zeroed grains and allocated grains of zeros, so reads come from every
// kind of owner while the device still reads as zeros.
func TestChainConformanceSparse(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		dir := t.TempDir()
		desc := filepath.Join(dir, "vol.vmdk")
		if err := flat.Create(desc, size, flat.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		base, err := flat.Open(desc, flat.Options{})
		if err != nil {
			t.Fatal(err)
		}
		frozen := newSparse(t, dir, "vol-000001.vmdk", size)
		e := openSparse(t, frozen, false)
		for g := int64(0); g < e.Grains(); g++ {
			switch g % 3 {
			case 1:
				err = e.AllocateGrain(t.Context(), g, make([]byte, e.GrainSize()))
			case 2:
				err = e.SetZero(t.Context(), g)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := e.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		top := newSparse(t, dir, "vol-000002.vmdk", size)
		c, err := New(base, []Delta{
			SparseDelta{Extent: openSparse(t, frozen, true)},
			SparseDelta{Extent: openSparse(t, top, false)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
