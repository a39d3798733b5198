package chain

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/blockdev/devtest"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// memDelta is an in-memory Delta for tests of the chain logic.
type memDelta struct {
	gs     int64
	mu     sync.Mutex // guards grains, kinds
	grains map[int64][]byte
	kinds  map[int64]Kind
	allocs int
}

func newMemDelta(gs int64) *memDelta {
	return &memDelta{gs: gs, grains: map[int64][]byte{}, kinds: map[int64]Kind{}}
}

func (d *memDelta) GrainSize() int64 { return d.gs }
func (d *memDelta) Kind(g int64) Kind {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.kinds[g]
}
func (d *memDelta) ReadGrain(ctx context.Context, g int64, off int, p []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(p, d.grains[g][off:])
	return nil
}
func (d *memDelta) WriteGrain(ctx context.Context, g int64, off int, p []byte, fua bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kinds[g] != Data {
		panic("WriteGrain on an unallocated grain")
	}
	copy(d.grains[g][off:], p)
	return nil
}
func (d *memDelta) AllocateGrain(ctx context.Context, g int64, full []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kinds[g] == Data {
		panic("grain allocated twice")
	}
	d.grains[g] = bytes.Clone(full)
	d.kinds[g] = Data
	d.allocs++
	return nil
}
func (d *memDelta) SetZero(ctx context.Context, g int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.grains, g)
	d.kinds[g] = Zero
	return nil
}
func (d *memDelta) Flush(ctx context.Context) error { return nil }
func (d *memDelta) Close() error                    { return nil }

const testGrain = 64 << 10

// A chain of a base and two deltas is a Device like any other.
func TestChainConformance(t *testing.T) {
	devtest.Run(t, func(t *testing.T, size int64) blockdev.Device {
		// devtest wants a fresh device to read as zeros: an empty base.
		base := memdev.New(size, false)
		c, err := New(base, []Delta{newMemDelta(testGrain), newMemDelta(testGrain)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// Reads see the topmost layer; writes never touch lower layers; zeroes
// hide the parent.
func TestChainLayering(t *testing.T) {
	ctx := t.Context()
	const size = 8 * testGrain
	base := memdev.New(size, false)
	base.WriteAt(ctx, bytes.Repeat([]byte{1}, size), 0, 0)
	mid := newMemDelta(testGrain)
	mid.AllocateGrain(ctx, 2, bytes.Repeat([]byte{2}, testGrain))
	mid.SetZero(ctx, 3)
	top := newMemDelta(testGrain)
	c, err := New(base, []Delta{mid, top})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	c.ReadAt(ctx, got, 0)
	want := bytes.Repeat([]byte{1}, size)
	copy(want[2*testGrain:], bytes.Repeat([]byte{2}, testGrain))
	clear(want[3*testGrain : 4*testGrain])
	if !bytes.Equal(got, want) {
		t.Fatal("chain read does not show the topmost layer per grain")
	}
	// A partial write into grain 2 completes it from mid.
	c.WriteAt(ctx, []byte{9, 9}, 2*testGrain+100, 0)
	copy(want[2*testGrain+100:], []byte{9, 9})
	// Zero grain 0 whole, part of grain 1.
	c.WriteZeroes(ctx, 0, testGrain+10, 0)
	clear(want[:testGrain+10])
	c.ReadAt(ctx, got, 0)
	if !bytes.Equal(got, want) {
		t.Fatal("after writes the chain reads wrong data")
	}
	if top.Kind(0) != Zero || top.Kind(1) != Data || top.Kind(2) != Data || mid.Kind(0) != Unallocated {
		t.Fatalf("kinds top %v %v %v mid %v", top.Kind(0), top.Kind(1), top.Kind(2), mid.Kind(0))
	}
	b := make([]byte, size)
	base.ReadAt(ctx, b, 0)
	if !bytes.Equal(b, bytes.Repeat([]byte{1}, size)) {
		t.Fatal("a write reached the base")
	}
	ext, err := c.BlockStatus(ctx, blockdev.MetaBaseAllocation, 0, size)
	if err != nil || ext[0].Flags != blockdev.StateHole|blockdev.StateZero || ext[0].Length != testGrain {
		t.Fatalf("block status %v %v", ext, err)
	}
}

// Many writers racing on the same unallocated grains allocate each once
// and lose no write.
func TestChainConcurrentAllocation(t *testing.T) {
	ctx := t.Context()
	const size = 16 * testGrain
	top := newMemDelta(testGrain)
	c, _ := New(memdev.New(size, false), []Delta{top})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 200 {
				g := r.Int64N(16)
				// Each writer owns byte w of every 8-byte slot: no overlaps.
				off := g*testGrain + int64(i%100)*8 + int64(w)
				c.WriteAt(ctx, []byte{byte(w + 1)}, off, 0)
			}
		})
	}
	wg.Wait()
	if top.allocs > 16 {
		t.Fatalf("%d allocations for 16 grains", top.allocs)
	}
	got := make([]byte, size)
	c.ReadAt(ctx, got, 0)
	for i, b := range got {
		if b != 0 && int(b) != i%8+1 {
			t.Fatalf("byte %d = %d: a racing allocation lost or misplaced a write", i, b)
		}
	}
}

// Merging the top into the layer below while writers run loses nothing:
// after Finish (writers stopped, as the gate does) the chain without the
// top reads exactly as the chain with it.
func TestMergeUnderWrites(t *testing.T) {
	ctx := t.Context()
	const size = 32 * testGrain
	for _, intoBase := range []bool{true, false} {
		base := memdev.New(size, false)
		base.WriteAt(ctx, bytes.Repeat([]byte{1}, size), 0, 0)
		deltas := []Delta{newMemDelta(testGrain)}
		if !intoBase {
			deltas = append(deltas, newMemDelta(testGrain))
		}
		c, _ := New(base, deltas)
		c.WriteAt(ctx, bytes.Repeat([]byte{2}, 5*testGrain), 3*testGrain+7, 0)
		c.WriteZeroes(ctx, 10*testGrain, 2*testGrain, 0)
		m := NewMerger(c)
		var stop atomic.Bool
		var wg sync.WaitGroup
		wg.Go(func() {
			r := rand.New(rand.NewPCG(7, 7))
			for !stop.Load() {
				off := r.Int64N(size - 4096)
				c.WriteAt(ctx, bytes.Repeat([]byte{byte(r.IntN(250) + 3)}, 4096), off, 0)
			}
		})
		if _, err := m.Copy(ctx, 4, 5, nil); err != nil {
			t.Fatal(err)
		}
		stop.Store(true)
		wg.Wait()
		want := make([]byte, size)
		c.ReadAt(ctx, want, 0)
		if err := m.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		nd, err := m.Without()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size)
		nd.ReadAt(ctx, got, 0)
		if !bytes.Equal(got, want) {
			t.Fatalf("intoBase=%v: merged layers differ from the chain", intoBase)
		}
	}
}
