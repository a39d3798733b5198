package devtest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

var _ blockdev.Device = (*Mem)(nil)

// Mem is an in-memory Device for tests of filters: it keeps the whole
// contract with whatever Caps it is given (MinBlock > 1 exercises
// alignment). BlockStatus reports zero runs at 4 KiB granularity as
// StateZero and stops after 64 extents, so callers must ask again.
type Mem struct {
	caps blockdev.Caps

	// mu guards data and closed.
	mu     sync.RWMutex
	data   []byte
	closed bool
}

// MemCaps returns capabilities for NewMem with everything on,
// byte-granular, and base:allocation.
func MemCaps() blockdev.Caps {
	return blockdev.Caps{
		Flush: true, FUA: true, Trim: true, Zero: true, FastZero: true, MultiConn: true, Cache: true,
		MinBlock: 1, PrefBlock: 4096, MaxPayload: 32 << 20,
		MetaContexts: []string{blockdev.MetaBaseAllocation},
	}
}

// NewMem returns a zero-filled in-memory device of size bytes.
func NewMem(size int64, caps blockdev.Caps) *Mem {
	return &Mem{caps: caps, data: make([]byte, size)}
}

// NewMemFrom returns an in-memory device holding a copy of content (for
// read-only devices, whose content cannot be written afterwards).
func NewMemFrom(content []byte, caps blockdev.Caps) *Mem {
	return &Mem{caps: caps, data: slices.Clone(content)}
}

func (d *Mem) Size() int64 { return int64(len(d.data)) }

func (d *Mem) Caps() blockdev.Caps {
	c := d.caps
	c.MetaContexts = slices.Clone(c.MetaContexts)
	return c
}

// lock checks the range and takes the lock (shared unless write); the
// caller unlocks with unlock(write).
func (d *Mem) lock(op string, off, n int64, write bool) error {
	if err := blockdev.CheckRange(int64(len(d.data)), d.caps.MinBlock, off, n); err != nil {
		return fmt.Errorf("mem %s: %w", op, err)
	}
	if write {
		d.mu.Lock()
	} else {
		d.mu.RLock()
	}
	var err error
	switch {
	case d.closed:
		err = blockdev.ErrClosed
	case write && d.caps.ReadOnly:
		err = blockdev.ErrReadOnly
	}
	if err != nil {
		d.unlock(write)
		return fmt.Errorf("mem %s: %w", op, err)
	}
	return nil
}

func (d *Mem) unlock(write bool) {
	if write {
		d.mu.Unlock()
	} else {
		d.mu.RUnlock()
	}
}

func (d *Mem) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.lock("read", off, int64(len(p)), false); err != nil {
		return err
	}
	defer d.unlock(false)
	copy(p, d.data[off:])
	return nil
}

func (d *Mem) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := d.lock("write", off, int64(len(p)), true); err != nil {
		return err
	}
	defer d.unlock(true)
	copy(d.data[off:], p)
	return nil
}

func (d *Mem) WriteZeroes(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	if err := d.lock("write zeroes", off, n, true); err != nil {
		return err
	}
	defer d.unlock(true)
	clear(d.data[off : off+n])
	return nil
}

func (d *Mem) Trim(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	if err := d.lock("trim", off, n, true); err != nil {
		return err
	}
	defer d.unlock(true)
	clear(d.data[off : off+n])
	return nil
}

func (d *Mem) Flush(ctx context.Context) error {
	if err := d.lock("flush", 0, 0, false); err != nil {
		return err
	}
	d.unlock(false)
	return nil
}

func (d *Mem) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	if !slices.Contains(d.caps.MetaContexts, meta) || meta != blockdev.MetaBaseAllocation {
		return nil, fmt.Errorf("mem block status %q: %w", meta, blockdev.ErrUnknownContext)
	}
	if err := d.lock("block status", off, n, false); err != nil {
		return nil, err
	}
	defer d.unlock(false)
	var out []blockdev.Extent
	for pos, end := off, off+n; pos < end && len(out) < 64; {
		next := min((pos/4096+1)*4096, end)
		var flags uint32
		if blockdev.IsZero(d.data[pos:next]) {
			flags = blockdev.StateZero
		}
		if k := len(out); k > 0 && out[k-1].Flags == flags {
			out[k-1].Length += next - pos
		} else {
			out = append(out, blockdev.Extent{Length: next - pos, Flags: flags})
		}
		pos = next
	}
	return out, nil
}

func (d *Mem) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("mem close: %w", blockdev.ErrClosed)
	}
	d.closed = true
	return nil
}
