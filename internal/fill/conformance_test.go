package fill

import (
	"path/filepath"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/chain"
	"github.com/extrasphere/extrasphere/internal/memdev"
	"github.com/extrasphere/extrasphere/internal/sparse"
)

// conformChunk is the backup's chunk size in these tests: the suite's
// device size is not a multiple of it, so the last chunk is short.
const conformChunk = 64 << 10

// newFilling returns a fill.Device over a backup holding content, with
// every other chunk already filled, so reads go to both the flat file
// and the backup.
func newFilling(t *testing.T, content []byte) *Device {
	t.Helper()
	d, err := New(memdev.New(int64(len(content)), false), &memSource{data: content, chunk: conformChunk})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, conformChunk)
	for c := 0; c < d.Chunks(); c += 2 {
		if err := d.Fill(t.Context(), c, buf); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// A fill.Device is read-only: the suite's writable part runs over it as
// the daemon serves it, the base of a chain whose top delta (a real
// sparse extent) takes the writes; the read-only part runs over the
// fill.Device alone.
func TestConformance(t *testing.T) {
	devtest.RunWithOptions(t, func(t *testing.T, size int64) blockdev.Device {
		base := newFilling(t, make([]byte, size))
		path := filepath.Join(t.TempDir(), "delta.vmdk")
		if err := sparse.Create(path, size, sparse.ParentRef{}, sparse.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ext, err := sparse.Open(path, false)
		if err != nil {
			t.Fatal(err)
		}
		c, err := chain.New(base, []chain.Delta{chain.SparseDelta{Extent: ext}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}, devtest.Options{OpenReadOnly: func(t *testing.T, content []byte) blockdev.Device {
		return newFilling(t, content)
	}})
}
