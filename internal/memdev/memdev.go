// Package memdev is an in-memory blockdev.Device for tests of filters and
// of the NBD layer. Storage is sparse, in 64 KiB pages; a page never
// written (or fully trimmed) is a hole. It is not durable: Flush only
// counts calls, which tests use to check that flushes reach the leaf.
package memdev

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

const pageSize = 64 << 10

// Device is a sparse in-memory disk.
type Device struct {
	size int64
	caps blockdev.Caps

	mu     sync.RWMutex // guards pages and closed
	pages  map[int64][]byte
	closed bool

	Flushes atomic.Int64 // Flush calls and FUA writes, for tests
}

var _ blockdev.Device = (*Device)(nil)

// New returns an empty device of size bytes; readOnly sets Caps.ReadOnly.
func New(size int64, readOnly bool) *Device {
	d := &Device{size: size, pages: map[int64][]byte{}}
	d.caps = blockdev.Caps{
		Flush: true, FUA: true, Trim: true, Zero: true,
		FastZero: true, MultiConn: true, Cache: true,
		MinBlock: 1, PrefBlock: 4096, MaxPayload: 32 << 20,
		MetaContexts: []string{blockdev.MetaBaseAllocation},
	}
	if readOnly {
		d.setReadOnly()
	}
	return d
}

// setReadOnly narrows the caps: nothing can be written.
func (d *Device) setReadOnly() {
	d.caps.ReadOnly = true
	d.caps.FUA, d.caps.Trim, d.caps.Zero, d.caps.FastZero = false, false, false, false
}

func (d *Device) Size() int64         { return d.size }
func (d *Device) Caps() blockdev.Caps { return d.caps }

func (d *Device) check(off, n int64, write bool) error {
	if d.closed {
		return blockdev.ErrClosed
	}
	if write && d.caps.ReadOnly {
		return blockdev.ErrReadOnly
	}
	return blockdev.CheckRange(d.size, 1, off, n)
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
	if meta != blockdev.MetaBaseAllocation {
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
