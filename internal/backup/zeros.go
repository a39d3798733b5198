package backup

import (
	"context"
	"fmt"
	"slices"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// allocationZeros walks dev's base:allocation map for a backup
// (repo.VolumeOptions.Zeros): every extent the device says reads as zero
// (a hole of the flat file from SEEK_DATA/SEEK_HOLE, a zeroed grain, a
// chunk a fill device knows is null) is visited, so the backup skips it
// without reading. nil when dev serves no allocation map: every chunk is
// then read.
func allocationZeros(dev blockdev.Device) func(context.Context, func(blockdev.Range)) error {
	if !slices.Contains(dev.Caps().MetaContexts, blockdev.MetaBaseAllocation) {
		return nil
	}
	return func(ctx context.Context, visit func(blockdev.Range)) error {
		size := dev.Size()
		for off := int64(0); off < size; {
			ext, err := dev.BlockStatus(ctx, blockdev.MetaBaseAllocation, off, size-off)
			if err != nil {
				return fmt.Errorf("block status at %d: %w", off, err)
			}
			start := off
			for _, e := range ext {
				if e.Length <= 0 || e.Length > size-off {
					return fmt.Errorf("block status at %d: extent of %d bytes: %w", off, e.Length, blockdev.ErrContractViolation)
				}
				if e.Flags&blockdev.StateZero != 0 {
					visit(blockdev.Range{Off: off, Len: e.Length})
				}
				off += e.Length
			}
			if off == start {
				return fmt.Errorf("block status at %d: no extent: %w", off, blockdev.ErrContractViolation)
			}
		}
		return nil
	}
}
