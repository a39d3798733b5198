package gate

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

func TestGateConformance(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		return New(memdev.New(size, false))
	})
}

// Writes racing with swaps are never lost: each swap copies the old
// device into the new one while I/O is held, as a pivot does.
func TestSwapUnderLoad(t *testing.T) {
	ctx := t.Context()
	const size = 1 << 20
	g := New(memdev.New(size, false))
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				off := int64((i*4+w)%(size/512)) * 512
				if err := g.WriteAt(ctx, bytes.Repeat([]byte{byte(w + 1)}, 512), off, 0); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 50 {
		_, err := g.Swap(func(cur blockdev.Device) (blockdev.Device, error) {
			buf := make([]byte, size)
			if err := cur.ReadAt(ctx, buf, 0); err != nil {
				return nil, err
			}
			nd := memdev.New(size, false)
			return nd, nd.WriteAt(ctx, buf, 0, 0)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	got := make([]byte, size)
	g.ReadAt(ctx, got, 0)
	for i := 0; i < size; i += 512 {
		if b := got[i]; b != 0 && int(b) != (i/512)%4+1 {
			t.Fatalf("block %d holds writer %d's data", i/512, b)
		}
	}
}
