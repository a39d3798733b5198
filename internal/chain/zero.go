package chain

import (
	"context"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// WriteZeroes turns whole grains into zeroed-grain entries of the top
// delta (hiding the parent) and writes zeros into partial grains. NoHole
// writes real zeros everywhere. FastZero fails with ErrNotFast, before
// touching anything, when any part would need a data write.
func (c *Chain) WriteZeroes(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	if err := c.check(off, n); err != nil {
		return err
	}
	noHole := flags&blockdev.NoHole != 0
	if flags&blockdev.FastZero != 0 && (noHole || !c.grainAligned(off, n)) {
		return fmt.Errorf("chain write zeroes [%d, +%d): partial grains: %w", off, n, blockdev.ErrNotFast)
	}
	fua := flags&blockdev.FUA != 0
	err := c.pieces(off, n, func(g int64, goff int, lo, hi int64) error {
		defer c.mark(g)
		if !noHole && goff == 0 && hi-lo == c.grainLen(g) {
			return c.zeroGrain(ctx, g)
		}
		bp := c.bufs.Get().(*[]byte)
		defer c.bufs.Put(bp)
		z := (*bp)[:hi-lo]
		clear(z)
		_, err := c.writeGrain(ctx, g, goff, z, false)
		return err
	})
	if err == nil && fua {
		err = c.deltas[len(c.deltas)-1].Flush(ctx)
	}
	return err
}

// Trim zeroes the whole grains inside the range (reads then return
// zeros, which Trim allows) and leaves partial grains alone.
func (c *Chain) Trim(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	if err := c.check(off, n); err != nil {
		return err
	}
	err := c.pieces(off, n, func(g int64, goff int, lo, hi int64) error {
		if goff == 0 && hi-lo == c.grainLen(g) {
			defer c.mark(g)
			return c.zeroGrain(ctx, g)
		}
		return nil
	})
	if err == nil && flags&blockdev.FUA != 0 {
		err = c.deltas[len(c.deltas)-1].Flush(ctx)
	}
	return err
}

func (c *Chain) grainAligned(off, n int64) bool {
	end := off + n
	return off%c.grain == 0 && (end%c.grain == 0 || end == c.size)
}

func (c *Chain) zeroGrain(ctx context.Context, g int64) error {
	mu := &c.stripes[g%int64(len(c.stripes))]
	mu.Lock()
	defer mu.Unlock()
	if c.owner[g].Load() == zeroOwner {
		return nil
	}
	if err := c.deltas[len(c.deltas)-1].SetZero(ctx, g); err != nil {
		return err
	}
	c.owner[g].Store(zeroOwner)
	return nil
}

// maxExtents bounds one BlockStatus answer; the caller asks again.
const maxExtents = 1024

// BlockStatus reports zeroed grains as holes, delta grains as data, and
// asks the base about grains still owned by it.
func (c *Chain) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	if meta != blockdev.MetaBaseAllocation {
		return nil, fmt.Errorf("chain block status %q: %w", meta, blockdev.ErrUnknownContext)
	}
	if err := c.check(off, n); err != nil {
		return nil, err
	}
	var out []blockdev.Extent
	add := func(length int64, flags uint32) {
		if k := len(out); k > 0 && out[k-1].Flags == flags {
			out[k-1].Length += length
		} else {
			out = append(out, blockdev.Extent{Length: length, Flags: flags})
		}
	}
	for pos, end := off, off+n; pos < end && len(out) < maxExtents; {
		g := pos / c.grain
		o := c.owner[g].Load()
		// Extend over following grains with the same owner.
		runEnd := min((g+1)*c.grain, end)
		for runEnd < end && c.owner[runEnd/c.grain].Load() == o {
			runEnd = min(runEnd+c.grain, end)
		}
		switch o {
		case zeroOwner:
			add(runEnd-pos, blockdev.StateHole|blockdev.StateZero)
		case 0:
			ext, err := c.base.BlockStatus(ctx, meta, pos, runEnd-pos)
			if err != nil {
				return nil, err
			}
			covered := int64(0)
			for _, e := range ext {
				add(e.Length, e.Flags)
				covered += e.Length
			}
			if covered < runEnd-pos { // the base stopped early: so do we
				return out, nil
			}
		default:
			add(runEnd-pos, 0)
		}
		pos = runEnd
	}
	return out, nil
}
