package chain

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// zeroOwner marks a grain whose topmost entry is a zeroed grain.
const zeroOwner = math.MaxUint32

// ErrNoDelta: a chain needs at least one delta to write into.
var ErrNoDelta = errors.New("chain has no delta")

// Chain is a Device over base and deltas (bottom to top). Every layer
// except the top delta is only read.
type Chain struct {
	base   blockdev.Device
	deltas []Delta
	size   int64
	grain  int64
	caps   blockdev.Caps

	// owner[g] is the layer holding grain g: 0 the base, i deltas[i-1],
	// zeroOwner a zeroed grain. Written only under the grain's stripe
	// lock; read without it (a racing read sees the old or new owner,
	// both valid for an overlapping in-flight write).
	owner []atomic.Uint32

	// sub holds which parts of each grain the top delta wrote (sub.go).
	sub []subWord

	stripes [256]sync.Mutex // serialise allocation and zeroing per grain (g % 256)
	bufs    sync.Pool       // grain-sized scratch buffers (*[]byte)

	closed atomic.Bool

	// track, while a consolidation runs, collects the grains written
	// after the copier last read them.
	track atomic.Pointer[dirtySet]
}

var _ blockdev.Device = (*Chain)(nil)

// New builds a chain. Every delta must have the base's size in grains of
// one size. The chain owns base and deltas: Close closes them all.
func New(base blockdev.Device, deltas []Delta) (*Chain, error) {
	if len(deltas) == 0 {
		return nil, ErrNoDelta
	}
	gs := deltas[0].GrainSize()
	for i, d := range deltas {
		if d.GrainSize() != gs {
			return nil, fmt.Errorf("delta %d has %d-byte grains, delta 0 has %d", i, d.GrainSize(), gs)
		}
	}
	size := base.Size()
	n := (size + gs - 1) / gs
	c := &Chain{base: base, deltas: deltas, size: size, grain: gs, owner: make([]atomic.Uint32, n),
		sub: newSubMasks(int(n))}
	c.bufs.New = func() any { b := make([]byte, gs); return &b }
	for g := range n {
		for i, d := range deltas {
			switch d.Kind(g) {
			case Data:
				c.owner[g].Store(uint32(i + 1))
			case Zero:
				c.owner[g].Store(zeroOwner)
			}
		}
		if c.owner[g].Load() == c.top() {
			c.orSub(g, fullMask) // written before this chain: all of it may differ
		}
	}
	bc := base.Caps()
	c.caps = blockdev.Caps{
		Flush: true, FUA: true, Trim: true, Zero: true, FastZero: true,
		MultiConn: true, // one Chain per volume, shared by every connection
		Cache:     bc.Cache,
		MinBlock:  1,
		PrefBlock: uint32(gs), // a first write to a grain reads the rest of it from below
		MaxPayload: func() uint32 {
			if bc.MaxPayload == 0 {
				return 32 << 20
			}
			return bc.MaxPayload
		}(),
		MetaContexts: []string{blockdev.MetaBaseAllocation},
	}
	return c, nil
}

func (c *Chain) Size() int64         { return c.size }
func (c *Chain) Caps() blockdev.Caps { return c.caps }
func (c *Chain) top() uint32         { return uint32(len(c.deltas)) }

// Layers returns the base and deltas; the engine uses them to pivot.
func (c *Chain) Layers() (blockdev.Device, []Delta) { return c.base, c.deltas }

func (c *Chain) check(off, n int64) error {
	if c.closed.Load() {
		return blockdev.ErrClosed
	}
	return blockdev.CheckRange(c.size, 1, off, n)
}

// pieces calls fn for each grain-bounded piece of [off, off+n).
func (c *Chain) pieces(off, n int64, fn func(g int64, goff int, lo, hi int64) error) error {
	for pos := off; pos < off+n; {
		g := pos / c.grain
		end := min((g+1)*c.grain, off+n)
		if err := fn(g, int(pos-g*c.grain), pos-off, end-off); err != nil {
			return err
		}
		pos = end
	}
	return nil
}

// grainLen is the number of bytes of grain g inside the device.
func (c *Chain) grainLen(g int64) int64 { return min(c.grain, c.size-g*c.grain) }

// readFrom reads p at goff of grain g from the given owner.
func (c *Chain) readFrom(ctx context.Context, owner uint32, g int64, goff int, p []byte) error {
	switch owner {
	case zeroOwner:
		clear(p)
		return nil
	case 0:
		return c.base.ReadAt(ctx, p, g*c.grain+int64(goff))
	default:
		return c.deltas[owner-1].ReadGrain(ctx, g, goff, p)
	}
}

// ReadAt reads each grain from the layer that owns it.
func (c *Chain) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := c.check(off, int64(len(p))); err != nil {
		return err
	}
	return c.pieces(off, int64(len(p)), func(g int64, goff int, lo, hi int64) error {
		return c.readFrom(ctx, c.owner[g].Load(), g, goff, p[lo:hi])
	})
}

// WriteAt writes into the top delta, completing new grains from below.
func (c *Chain) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := c.check(off, int64(len(p))); err != nil {
		return err
	}
	fua := flags&blockdev.FUA != 0
	allocated := false
	err := c.pieces(off, int64(len(p)), func(g int64, goff int, lo, hi int64) error {
		a, err := c.writeGrain(ctx, g, goff, p[lo:hi], fua)
		allocated = allocated || a
		c.mark(g)
		return err
	})
	if err == nil && fua && allocated {
		// A new grain is durable only once its table entry is.
		err = c.deltas[len(c.deltas)-1].Flush(ctx)
	}
	return err
}

// writeGrain writes p at goff of grain g in the top delta and reports
// whether it had to allocate the grain.
func (c *Chain) writeGrain(ctx context.Context, g int64, goff int, p []byte, fua bool) (bool, error) {
	top := c.deltas[len(c.deltas)-1]
	if c.owner[g].Load() == c.top() {
		c.markSub(g, goff, len(p)) // before the data: a merge that misses it copies g again (mark)
		return false, top.WriteGrain(ctx, g, goff, p, fua)
	}
	mu := &c.stripes[g%int64(len(c.stripes))]
	mu.Lock()
	defer mu.Unlock()
	owner := c.owner[g].Load()
	if owner == c.top() { // allocated while we waited
		c.markSub(g, goff, len(p))
		return false, top.WriteGrain(ctx, g, goff, p, fua)
	}
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	full := *bp
	n := c.grainLen(g)
	if int64(len(p)) < n {
		if err := c.readFrom(ctx, owner, g, 0, full[:n]); err != nil {
			return false, fmt.Errorf("complete grain %d from below: %w", g, err)
		}
	}
	clear(full[n:])
	copy(full[goff:], p)
	if err := top.AllocateGrain(ctx, g, full); err != nil {
		return false, err
	}
	if owner == zeroOwner {
		c.orSub(g, fullMask) // the zeros may be the top's own: the layers below do not read them
	} else {
		c.markSub(g, goff, len(p))
	}
	c.owner[g].Store(c.top())
	return true, nil
}

// Flush makes the top delta's data and grain tables durable.
func (c *Chain) Flush(ctx context.Context) error {
	if c.closed.Load() {
		return blockdev.ErrClosed
	}
	return c.deltas[len(c.deltas)-1].Flush(ctx)
}

// Close closes every layer.
func (c *Chain) Close() error {
	if c.closed.Swap(true) {
		return blockdev.ErrClosed
	}
	var errs []error
	for _, d := range c.deltas {
		errs = append(errs, d.Close())
	}
	errs = append(errs, c.base.Close())
	return errors.Join(errs...)
}

// Extend returns a chain with d, an empty delta, on top of c's layers. The
// owner map is copied, not rebuilt, so a snapshot's pivot stays short. c
// must not be used afterwards (the new chain owns the layers); it is not
// closed.
func Extend(c *Chain, d Delta) (*Chain, error) {
	if d.GrainSize() != c.grain {
		return nil, fmt.Errorf("extend chain: delta has %d-byte grains, chain %d", d.GrainSize(), c.grain)
	}
	n := &Chain{base: c.base, deltas: append(append([]Delta(nil), c.deltas...), d),
		size: c.size, grain: c.grain, caps: c.caps, owner: make([]atomic.Uint32, len(c.owner)),
		sub: newSubMasks(len(c.owner))}
	n.bufs.New = c.bufs.New
	for g := range c.owner {
		n.owner[g].Store(c.owner[g].Load())
	}
	return n, nil
}

// mark records that grain g changed, for a running consolidation. It runs
// after the write completed, so a copier that clears the mark before
// reading either sees the write or copies the grain again.
func (c *Chain) mark(g int64) {
	if t := c.track.Load(); t != nil {
		t.add(g)
	}
}

// Rebase returns a chain with c's top delta over base and deltas, copies
// of c's lower layers (same content, same grain kinds: a migration's
// copies on another datastore). The owner map and the top's write masks
// are kept, so a merge of the top still copies only what was written. c
// must not be used afterwards; its lower layers are not closed.
func Rebase(c *Chain, base blockdev.Device, deltas []Delta) (*Chain, error) {
	if len(deltas) != len(c.deltas)-1 || base.Size() != c.size {
		return nil, fmt.Errorf("rebase chain: %d layers of %d bytes for %d of %d", len(deltas)+1, base.Size(), len(c.deltas), c.size)
	}
	for _, d := range deltas {
		if d.GrainSize() != c.grain {
			return nil, fmt.Errorf("rebase chain: delta has %d-byte grains, chain %d", d.GrainSize(), c.grain)
		}
	}
	n := &Chain{base: base, deltas: append(append([]Delta(nil), deltas...), c.deltas[len(c.deltas)-1]),
		size: c.size, grain: c.grain, caps: c.caps, owner: make([]atomic.Uint32, len(c.owner)), sub: c.sub}
	n.bufs.New = c.bufs.New
	for g := range c.owner {
		n.owner[g].Store(c.owner[g].Load())
	}
	return n, nil
}
