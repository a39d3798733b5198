// Package fill is the base of a volume being restored instantly from a
// backup: a Device that reads each chunk from the volume's own flat file
// once that chunk has been filled (copied from the backup), and from the
// backup until then. The volume is exported at once, with a delta on top
// taking the writes; a promote fills every chunk, after which the flat
// file alone is the base.
//
// Which chunks are filled is kept in memory only. After a restart none
// counts as filled and reads go to the backup again, which is correct:
// the flat file only ever receives the backup's own bytes.
package fill

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Source is a backup volume (repo.VolumeReader implements it).
type Source interface {
	ReadAt(ctx context.Context, p []byte, off int64) error
	Size() int64
	ChunkSize() int
	IsZero(chunk int) bool
	Close() error
}

// Device reads filled chunks from flat and the others from src. It is
// read-only: the writes of the volume go to the delta above it.
type Device struct {
	flat   blockdev.Device
	src    Source
	chunk  int64
	filled []atomic.Bool // per chunk: the flat file holds it
	closed atomic.Bool
}

var _ blockdev.Device = (*Device)(nil)

// New returns a Device over flat (the volume's own, sparse, same size)
// and src. It owns both: Close closes them.
func New(flat blockdev.Device, src Source) (*Device, error) {
	if flat.Size() != src.Size() {
		return nil, fmt.Errorf("fill: flat file is %d bytes, the backup volume %d", flat.Size(), src.Size())
	}
	cs := int64(src.ChunkSize())
	if cs <= 0 {
		return nil, fmt.Errorf("fill: chunk size %d", cs)
	}
	n := (src.Size() + cs - 1) / cs
	return &Device{flat: flat, src: src, chunk: cs, filled: make([]atomic.Bool, n)}, nil
}

func (d *Device) Size() int64 { return d.flat.Size() }

// Caps say read-only: the writes go to the delta above.
func (d *Device) Caps() blockdev.Caps {
	return blockdev.Caps{ReadOnly: true, MinBlock: 1, PrefBlock: uint32(d.chunk), MaxPayload: 32 << 20,
		MetaContexts: []string{blockdev.MetaBaseAllocation}}
}

// Chunks is how many chunks the volume has.
func (d *Device) Chunks() int { return len(d.filled) }

// ReadAt reads each chunk from where it is now.
func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	if d.closed.Load() {
		return blockdev.ErrClosed
	}
	if err := blockdev.CheckRange(d.Size(), 1, off, int64(len(p))); err != nil {
		return err
	}
	for pos := off; pos < off+int64(len(p)); {
		c := pos / d.chunk
		end := min((c+1)*d.chunk, off+int64(len(p)))
		q := p[pos-off : end-off]
		var err error
		if d.filled[c].Load() {
			err = d.flat.ReadAt(ctx, q, pos)
		} else {
			err = d.src.ReadAt(ctx, q, pos)
		}
		if err != nil {
			return fmt.Errorf("read restored volume at %d: %w", pos, err)
		}
		pos = end
	}
	return nil
}

// Fill copies chunk c from the backup into the flat file (not synced)
// and marks it filled. buf must hold a chunk. Zero chunks need no copy:
// the flat file is sparse.
func (d *Device) Fill(ctx context.Context, c int, buf []byte) error {
	if d.filled[c].Load() {
		return nil
	}
	if !d.src.IsZero(c) {
		off := int64(c) * d.chunk
		b := buf[:min(d.chunk, d.Size()-off)]
		if err := d.src.ReadAt(ctx, b, off); err != nil {
			return fmt.Errorf("fill chunk %d: %w", c, err)
		}
		if err := d.flat.WriteAt(ctx, b, off, 0); err != nil {
			return fmt.Errorf("fill chunk %d: %w", c, err)
		}
	}
	d.filled[c].Store(true)
	return nil
}

// Flat is the volume's own flat device; once every chunk is filled and
// flushed it replaces this Device as the base.
func (d *Device) Flat() blockdev.Device { return d.flat }

// Release closes the backup source and returns the flat device, which
// the caller now owns. The Device is unusable afterwards.
func (d *Device) Release() (blockdev.Device, error) {
	d.closed.Store(true)
	return d.flat, d.src.Close()
}

func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	return blockdev.ErrReadOnly
}
func (d *Device) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	return blockdev.ErrReadOnly
}
func (d *Device) Trim(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	return blockdev.ErrReadOnly
}
func (d *Device) Flush(ctx context.Context) error { return nil }

// BlockStatus reports zero chunks of the backup (not yet filled: a filled
// zero chunk is a hole in the flat file too) as holes, the rest as data.
func (d *Device) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	if meta != blockdev.MetaBaseAllocation {
		return nil, blockdev.ErrUnknownContext
	}
	if err := blockdev.CheckRange(d.Size(), 1, off, n); err != nil {
		return nil, err
	}
	var out []blockdev.Extent
	for pos := off; pos < off+n && len(out) < 1024; {
		c := pos / d.chunk
		end := min((c+1)*d.chunk, off+n)
		var flags uint32
		if d.src.IsZero(int(c)) {
			flags = blockdev.StateHole | blockdev.StateZero
		}
		if k := len(out); k > 0 && out[k-1].Flags == flags {
			out[k-1].Length += end - pos
		} else {
			out = append(out, blockdev.Extent{Length: end - pos, Flags: flags})
		}
		pos = end
	}
	return out, nil
}

func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	return errors.Join(d.src.Close(), d.flat.Close())
}
