package flat

import (
	"context"
	"errors"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

// BlockStatus answers base:allocation from SEEK_DATA/SEEK_HOLE: data is
// flags 0, a hole StateHole|StateZero. It stops after maxExtents extents.
// On a filesystem without SEEK_DATA the whole range is data, which is
// always a correct answer.
func (d *Device) BlockStatus(ctx context.Context, meta string, off, length int64) ([]blockdev.Extent, error) {
	if meta != blockdev.MetaBaseAllocation {
		return nil, fmt.Errorf("block status %s %q: %w", d.path, meta, blockdev.ErrUnknownContext)
	}
	if err := d.acquire(ctx, "block status", off, length); err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	var out []blockdev.Extent
	pos, end := off, off+length
	// Each turn adds one extent or, when the file changed between the two
	// lseeks, none; bound the turns so a file that keeps changing cannot
	// hold us here.
	for turn := 0; pos < end && len(out) < maxExtents; turn++ {
		if turn == 2*maxExtents {
			return appendExtent(out, end-pos, 0), nil
		}
		data, err := d.seek(pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = end // no data at or after pos
		} else if unsupported(err) || errors.Is(err, unix.EINVAL) {
			return appendExtent(out, end-pos, 0), nil
		} else if err != nil {
			return nil, err
		}
		if data > pos {
			n := min(data, end) - pos
			out = appendExtent(out, n, blockdev.StateHole|blockdev.StateZero)
			pos += n
			continue
		}
		hole, err := d.seek(pos, unix.SEEK_HOLE)
		if errors.Is(err, unix.ENXIO) {
			hole = end
		} else if err != nil {
			return nil, err
		}
		if hole > pos {
			n := min(hole, end) - pos
			out = appendExtent(out, n, 0)
			pos += n
		}
	}
	return out, nil
}

func (d *Device) seek(off int64, whence int) (int64, error) {
	for {
		n, err := d.sys.seek(d.fd, off, whence)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("seek %s: %w", d.path, err)
		}
		return n, nil
	}
}

// appendExtent appends a run, merging it into the last one when the flags
// match.
func appendExtent(out []blockdev.Extent, n int64, flags uint32) []blockdev.Extent {
	if k := len(out); k > 0 && out[k-1].Flags == flags {
		out[k-1].Length += n
		return out
	}
	return append(out, blockdev.Extent{Length: n, Flags: flags})
}
