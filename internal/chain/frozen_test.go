package chain

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

func readAll(t *testing.T, d blockdev.Device) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	if err := d.ReadAt(t.Context(), b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// Merging a frozen middle layer into the one below it, while the top is
// written, changes no view but the one that ends at the target: that one
// becomes the merged layer's view. The remapped chain reads like the old
// one, and a chain rebuilt from the layers' grain kinds (a restart) reads
// the same too.
func TestFrozenMerge(t *testing.T) {
	const size = 40 * testGrain
	for _, i := range []int{1, 2} { // 1: into the base, 2: into a delta
		ctx := t.Context()
		base := memdev.New(size, false)
		base.WriteAt(ctx, bytes.Repeat([]byte{1}, size), 0, 0)
		ds := []Delta{newMemDelta(testGrain), newMemDelta(testGrain), newMemDelta(testGrain)}
		c, err := New(base, ds[:1])
		if err != nil {
			t.Fatal(err)
		}
		write := func(c *Chain, b byte, off, n int64) {
			if err := c.WriteAt(ctx, bytes.Repeat([]byte{b}, int(n)), off, 0); err != nil {
				t.Fatal(err)
			}
		}
		write(c, 2, 3*testGrain+100, 4*testGrain)
		write(c, 2, size-10, 10) // the last grain
		c, _ = Extend(c, ds[1])
		write(c, 3, 5*testGrain, 3*testGrain+5)
		if err := c.WriteZeroes(ctx, 20*testGrain, 3*testGrain, 0); err != nil {
			t.Fatal(err)
		}
		write(c, 3, 30*testGrain+1, 1)
		c, _ = Extend(c, ds[2])
		write(c, 4, 6*testGrain, testGrain)

		views := make([][]byte, 3)
		for k := range views {
			var view blockdev.Device = base
			if k > 0 {
				vc, err := New(base, ds[:k])
				if err != nil {
					t.Fatal(err)
				}
				view = vc
			}
			views[k] = readAll(t, view)
		}

		m, err := NewFrozenMerger(c, i)
		if err != nil {
			t.Fatal(err)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 9))
			for !stop.Load() {
				write(c, byte(r.IntN(200)+10), r.Int64N(size-8192), 8192)
			}
		})
		if _, err := m.Copy(ctx, 1, 1, nil); err != nil {
			t.Fatal(err)
		}
		if err := m.Settle(ctx); err != nil {
			t.Fatal(err)
		}
		stop.Store(true)
		wg.Wait()
		if err := m.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		want := readAll(t, c)
		nd, err := m.Without()
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, nd); !bytes.Equal(got, want) {
			t.Fatalf("merge of layer %d: the chain without it reads differently", i)
		}
		// The target's own view is now the merged layer's (view i).
		var target blockdev.Device = base
		if i > 1 {
			target, _ = New(base, ds[:i-1])
		}
		if got := readAll(t, target); !bytes.Equal(got, views[i]) {
			t.Fatalf("merge of layer %d: layer %d does not read as layer %d did", i, i-1, i)
		}
		// Views below the target are untouched.
		for k := 0; k < i-1; k++ {
			var vd blockdev.Device = base
			if k > 0 {
				vd, _ = New(base, ds[:k])
			}
			if !bytes.Equal(readAll(t, vd), views[k]) {
				t.Fatalf("merge of layer %d changed view %d", i, k)
			}
		}
		rest := append(append([]Delta{}, ds[:i-1]...), ds[i:]...)
		rebuilt, err := New(base, rest)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, rebuilt); !bytes.Equal(got, want) {
			t.Fatalf("merge of layer %d: a chain rebuilt from the remaining layers reads differently", i)
		}
	}
}

func TestFrozenMergeRefusesTopAndBase(t *testing.T) {
	base := memdev.New(4*testGrain, false)
	c, _ := New(base, []Delta{newMemDelta(testGrain), newMemDelta(testGrain)})
	for _, i := range []int{0, 2, 3, -1} {
		if _, err := NewFrozenMerger(c, i); err == nil {
			t.Errorf("NewFrozenMerger(layer %d) of a 2-delta chain: no error", i)
		}
	}
}
