package chain

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// dirtySet is a set of grains written during a consolidation.
type dirtySet struct {
	mu sync.Mutex // guards m
	m  map[int64]struct{}
}

func (d *dirtySet) add(g int64) {
	d.mu.Lock()
	d.m[g] = struct{}{}
	d.mu.Unlock()
}

// take empties the set and returns its grains in order.
func (d *dirtySet) take() []int64 {
	d.mu.Lock()
	gs := make([]int64, 0, len(d.m))
	for g := range d.m {
		gs = append(gs, g)
	}
	d.m = map[int64]struct{}{}
	d.mu.Unlock()
	sort.Slice(gs, func(i, j int) bool { return gs[i] < gs[j] })
	return gs
}

// Merger copies one delta of a chain into the layer below it while the
// chain keeps serving I/O. Usage: NewMerger (the top delta) or
// NewFrozenMerger (a delta under the top), Copy (live, repeatable), then
// with I/O held (gate) Finish, which copies what was written meanwhile
// and flushes the target. The caller then commits by deleting the merged
// delta's file and installs Without().
type Merger struct {
	c      *Chain
	top    Delta // the delta being merged away (the chain's top for NewMerger)
	below  int   // layer index of the target: 0 the base, i deltas[i-1]
	frozen bool  // top is under the chain's top: nothing writes it
	dirty  *dirtySet
	copied int64 // grains copied, for progress
}

// NewMerger starts tracking writes. The chain must have a delta below the
// top or a writable base.
func NewMerger(c *Chain) *Merger {
	m := &Merger{c: c, top: c.deltas[len(c.deltas)-1], below: len(c.deltas) - 1,
		dirty: &dirtySet{m: map[int64]struct{}{}}}
	c.track.Store(m.dirty)
	return m
}

// NewFrozenMerger merges layer i (deltas[i-1], 1 <= i < the top) into
// layer i-1. Nothing writes layer i, so no tracking is needed, and every
// view stays the same while it copies: the grains it copies are exactly
// those layer i (or a layer above it) hides in layer i-1. Only views
// that end at layer i-1 change, so that layer must not be a snapshot.
func NewFrozenMerger(c *Chain, i int) (*Merger, error) {
	if i < 1 || i >= len(c.deltas) {
		return nil, fmt.Errorf("merge layer %d of a chain of %d deltas: not a frozen delta", i, len(c.deltas))
	}
	return &Merger{c: c, top: c.deltas[i-1], below: i - 1, frozen: true,
		dirty: &dirtySet{m: map[int64]struct{}{}}}, nil
}

// Grains is how many grains the top delta holds (the work to do).
func (m *Merger) Grains() int64 {
	var n int64
	for g := range int64(len(m.c.owner)) {
		if m.top.Kind(g) != Unallocated {
			n++
		}
	}
	return n
}

// Copied is how many grains have been copied so far.
func (m *Merger) Copied() int64 { return m.copied }

// Copy copies every grain the top holds, then the grains written during
// the copy, until fewer than stopAt remain dirty or passes run out. It
// returns how many dirty grains are left for Finish. progress, if set,
// is called after each grain.
func (m *Merger) Copy(ctx context.Context, stopAt, passes int, progress func(copied int64)) (int, error) {
	var todo []int64
	m.dirty.take() // the full pass below covers everything written so far
	for g := range int64(len(m.c.owner)) {
		if m.top.Kind(g) != Unallocated {
			todo = append(todo, g)
		}
	}
	for pass := 0; ; pass++ {
		for _, g := range todo {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if err := m.copyGrain(ctx, g); err != nil {
				return 0, err
			}
			if progress != nil {
				progress(m.copied)
			}
		}
		todo = m.dirty.take()
		if len(todo) < stopAt || pass >= passes {
			// Put them back for Finish.
			for _, g := range todo {
				m.dirty.add(g)
			}
			return len(todo), nil
		}
	}
}

// Finish copies the grains still dirty. I/O must be held: afterwards the
// target holds everything the top delta does, durably.
func (m *Merger) Finish(ctx context.Context) error {
	for _, g := range m.dirty.take() {
		if err := m.copyGrain(ctx, g); err != nil {
			return err
		}
	}
	return m.flushTarget(ctx)
}

// Abort stops tracking; the chain is unchanged (the target may hold
// copies of top grains, which the top still hides).
func (m *Merger) Abort() {
	if !m.frozen {
		m.c.track.Store(nil)
	}
}

// copyGrain copies grain g of the top delta into the target layer.
func (m *Merger) copyGrain(ctx context.Context, g int64) error {
	n := m.c.grainLen(g)
	switch m.top.Kind(g) {
	case Unallocated:
		return nil // only written by a grain that was zeroed then... never: kinds only grow
	case Zero:
		if m.below == 0 {
			if err := m.c.base.WriteZeroes(ctx, g*m.c.grain, n, 0); err != nil {
				return fmt.Errorf("consolidate grain %d: %w", g, err)
			}
		} else if err := m.c.deltas[m.below-1].SetZero(ctx, g); err != nil {
			return fmt.Errorf("consolidate grain %d: %w", g, err)
		}
	case Data:
		bp := m.c.bufs.Get().(*[]byte)
		defer m.c.bufs.Put(bp)
		if mask := m.partMask(g); mask != fullMask {
			if err := m.copyParts(ctx, g, mask, *bp); err != nil {
				return fmt.Errorf("consolidate grain %d: %w", g, err)
			}
			break
		}
		buf := (*bp)[:n]
		if err := m.top.ReadGrain(ctx, g, 0, buf); err != nil {
			return fmt.Errorf("consolidate grain %d: read: %w", g, err)
		}
		if err := m.writeBelow(ctx, g, buf); err != nil {
			return fmt.Errorf("consolidate grain %d: %w", g, err)
		}
	}
	m.copied++
	return nil
}

// partMask is which parts of top grain g differ from the target's view
// (sub.go): fullMask unless the top is the chain's top, whose writes are
// tracked, and the target holds grain g itself (the base always does; a
// delta that does not must get the whole grain allocated).
func (m *Merger) partMask(g int64) uint32 {
	if m.frozen {
		return fullMask
	}
	if m.below > 0 && m.c.deltas[m.below-1].Kind(g) != Data {
		return fullMask
	}
	mask := m.c.subMask(g)
	if mask == 0 {
		return fullMask // cannot happen for a grain the top holds; be safe
	}
	return mask
}

// copyParts copies the marked parts of top grain g into the target.
func (m *Merger) copyParts(ctx context.Context, g int64, mask uint32, buf []byte) error {
	glen := int(m.c.grainLen(g))
	return subRuns(mask, int(m.c.grain)/subBlocks, func(off, n int) error {
		n = min(n, glen-off)
		if n <= 0 {
			return nil
		}
		b := buf[:n]
		if err := m.top.ReadGrain(ctx, g, off, b); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if m.below == 0 {
			return m.c.base.WriteAt(ctx, b, g*m.c.grain+int64(off), 0)
		}
		return m.c.deltas[m.below-1].WriteGrain(ctx, g, off, b, false)
	})
}

func (m *Merger) writeBelow(ctx context.Context, g int64, buf []byte) error {
	if m.below == 0 {
		return m.c.base.WriteAt(ctx, buf, g*m.c.grain, 0)
	}
	d := m.c.deltas[m.below-1]
	if d.Kind(g) == Data {
		return d.WriteGrain(ctx, g, 0, buf, false)
	}
	full := buf
	if int64(len(buf)) < m.c.grain {
		full = make([]byte, m.c.grain)
		copy(full, buf)
	}
	return d.AllocateGrain(ctx, g, full)
}

// Without returns the device that replaces the chain once the top delta
// is gone: the chain of the remaining layers, or the base itself. The
// top delta is not closed; the caller closes it after the pivot.
func (m *Merger) Without() (blockdev.Device, error) {
	if m.frozen {
		return m.c.without(m.below + 1), nil
	}
	m.c.track.Store(nil)
	if m.below == 0 {
		return m.c.base, nil
	}
	return New(m.c.base, m.c.deltas[:m.below])
}

// Top is the delta being merged away.
func (m *Merger) Top() Delta { return m.top }

// Settle flushes the target and copies again what was written while it
// was flushing, a few times, so the Finish that runs with I/O held has
// few grains to copy and little to sync. I/O keeps running during Settle.
func (m *Merger) Settle(ctx context.Context) error {
	for range 3 {
		if err := m.flushTarget(ctx); err != nil {
			return err
		}
		gs := m.dirty.take()
		for _, g := range gs {
			if err := m.copyGrain(ctx, g); err != nil {
				return err
			}
		}
		if len(gs) < 16 {
			break
		}
	}
	return nil
}

func (m *Merger) flushTarget(ctx context.Context) error {
	if m.below == 0 {
		return m.c.base.Flush(ctx)
	}
	return m.c.deltas[m.below-1].Flush(ctx)
}

// without returns a chain of c's layers minus layer i (1 <= i < top),
// whose grains the layer below now holds too (a frozen merge finished).
// The owner map is remapped, not rebuilt. c must not be used afterwards;
// layer i is not closed.
func (c *Chain) without(i int) *Chain {
	ds := make([]Delta, 0, len(c.deltas)-1)
	ds = append(ds, c.deltas[:i-1]...)
	ds = append(ds, c.deltas[i:]...)
	n := &Chain{base: c.base, deltas: ds, size: c.size, grain: c.grain, caps: c.caps,
		owner: make([]atomic.Uint32, len(c.owner)), sub: c.sub} // same top, same masks
	n.bufs.New = c.bufs.New
	for g := range c.owner {
		o := c.owner[g].Load()
		if o != zeroOwner && o >= uint32(i) {
			o-- // layer i's grains are in layer i-1 now; the layers above move down one
		}
		n.owner[g].Store(o)
	}
	return n
}
