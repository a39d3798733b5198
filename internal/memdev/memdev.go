// Package memdev is the in-memory blockdev.Device of every test: for
// filters, the NBD layer and the engine. Storage is sparse, in 64 KiB
// pages; a page never written (or fully trimmed) is a hole. It is not
// durable: Flush only counts calls, which tests use to check that flushes
// reach the leaf. Options narrow its capabilities (MinBlock > 1 exercises
// alignment) and cap its block-status replies, so filters meet a device
// that stops early.
package memdev

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

const pageSize = 64 << 10

// Device is a sparse in-memory disk.
type Device struct {
	size       int64
	caps       blockdev.Caps
	maxExtents int // BlockStatus stops after this many extents; 0 never

	mu     sync.RWMutex // guards pages and closed
	pages  map[int64][]byte
	closed bool

	Flushes atomic.Int64 // Flush calls and FUA writes, for tests
}

var _ blockdev.Device = (*Device)(nil)

// Options tune NewWithOptions.
type Options struct {
	// Caps replaces DefaultCaps when set. ReadOnly in it makes every write
	// fail with ErrReadOnly; MinBlock is enforced on every request.
	Caps *blockdev.Caps

	// Content is what the device holds at first (at most size bytes; the
	// rest reads as zeros): the way to fill a read-only device.
	Content []byte

	// MaxExtents, when positive, ends every BlockStatus reply after that
	// many extents: callers must ask again for the rest.
	MaxExtents int
}

// DefaultCaps are the capabilities of New's writable devices: everything
// on, byte-granular, base:allocation.
func DefaultCaps() blockdev.Caps {
	return blockdev.Caps{
		Flush: true, FUA: true, Trim: true, Zero: true,
		FastZero: true, MultiConn: true, Cache: true,
		MinBlock: 1, PrefBlock: 4096, MaxPayload: 32 << 20,
		MetaContexts: []string{blockdev.MetaBaseAllocation},
	}
}

// ReadOnlyCaps narrows c for a device nothing can be written to.
func ReadOnlyCaps(c blockdev.Caps) blockdev.Caps {
	c.ReadOnly = true
	c.FUA, c.Trim, c.Zero, c.FastZero = false, false, false, false
	return c
}

// New returns an empty device of size bytes; readOnly sets Caps.ReadOnly.
func New(size int64, readOnly bool) *Device {
	caps := DefaultCaps()
	if readOnly {
		caps = ReadOnlyCaps(caps)
	}
	return NewWithOptions(size, Options{Caps: &caps})
}

// NewWithOptions returns a device of size bytes as o says.
func NewWithOptions(size int64, o Options) *Device {
	caps := DefaultCaps()
	if o.Caps != nil {
		caps = *o.Caps
		caps.MetaContexts = slices.Clone(caps.MetaContexts)
	}
	d := &Device{size: size, caps: caps, maxExtents: o.MaxExtents, pages: map[int64][]byte{}}
	n := min(int64(len(o.Content)), size)
	d.write(o.Content[:n], 0, n)
	return d
}

func (d *Device) Size() int64 { return d.size }

func (d *Device) Caps() blockdev.Caps {
	c := d.caps
	c.MetaContexts = slices.Clone(c.MetaContexts)
	return c
}

func (d *Device) check(off, n int64, write bool) error {
	if d.closed {
		return blockdev.ErrClosed
	}
	if write && d.caps.ReadOnly {
		return blockdev.ErrReadOnly
	}
	return blockdev.CheckRange(d.size, d.caps.MinBlock, off, n)
}

func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.check(off, int64(len(p)), false); err != nil {
		return err
	}
	for done := 0; done < len(p); {
		pg, po := (off+int64(done))/pageSize, (off+int64(done))%pageSize
		k := min(int64(len(p)-done), pageSize-po)
		if b := d.pages[pg]; b != nil {
			copy(p[done:done+int(k)], b[po:])
		} else {
			clear(p[done : done+int(k)])
		}
		done += int(k)
	}
	return nil
}

func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(off, int64(len(p)), true); err != nil {
		return err
	}
	d.write(p, off, int64(len(p)))
	if flags&blockdev.FUA != 0 {
		d.Flushes.Add(1)
	}
	return nil
}

// write copies p (or zeros when p is nil) to [off, off+n). Caller holds mu.
func (d *Device) write(p []byte, off, n int64) {
	for done := int64(0); done < n; {
		pg, po := (off+done)/pageSize, (off+done)%pageSize
		k := min(n-done, pageSize-po)
		b := d.pages[pg]
		if b == nil {
			if p == nil {
				done += k
				continue
			}
			b = make([]byte, pageSize)
			d.pages[pg] = b
		}
		if p == nil {
			clear(b[po : po+k])
		} else {
			copy(b[po:po+k], p[done:done+k])
		}
		done += k
	}
}

func (d *Device) WriteZeroes(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(off, n, true); err != nil {
		return err
	}
	if flags&blockdev.NoHole != 0 {
		d.write(make([]byte, n), off, n)
	} else {
		d.write(nil, off, n)
		d.punch(off, n)
	}
	return nil
}

func (d *Device) Trim(ctx context.Context, off, n int64, flags blockdev.WriteFlags) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.check(off, n, true); err != nil {
		return err
	}
	d.write(nil, off, n)
	d.punch(off, n)
	return nil
}

// punch drops whole pages inside [off, off+n). Caller holds mu.
func (d *Device) punch(off, n int64) {
	for pg := (off + pageSize - 1) / pageSize; (pg+1)*pageSize <= off+n; pg++ {
		delete(d.pages, pg)
	}
}

func (d *Device) Flush(ctx context.Context) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return blockdev.ErrClosed
	}
	d.Flushes.Add(1)
	return nil
}

func (d *Device) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	if meta != blockdev.MetaBaseAllocation || !slices.Contains(d.caps.MetaContexts, meta) {
		return nil, fmt.Errorf("memdev %q: %w", meta, blockdev.ErrUnknownContext)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if err := d.check(off, n, false); err != nil {
		return nil, err
	}
	var out []blockdev.Extent
	for done := int64(0); done < n; {
		pg, po := (off+done)/pageSize, (off+done)%pageSize
		k := min(n-done, pageSize-po)
		var f uint32
		if d.pages[pg] == nil {
			f = blockdev.StateHole | blockdev.StateZero
		}
		if l := len(out); l > 0 && out[l-1].Flags == f {
			out[l-1].Length += k
		} else if l == d.maxExtents && l > 0 {
			break // a short reply: the caller asks again from here
		} else {
			out = append(out, blockdev.Extent{Length: k, Flags: f})
		}
		done += k
	}
	return out, nil
}

func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return blockdev.ErrClosed
	}
	d.closed = true
	return nil
}
