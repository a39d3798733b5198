package cbt

import (
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// StateDirty is the one flag of a dirty-bitmap meta context
// (NBD_STATE_DIRTY); a clean extent has flags 0.
const StateDirty uint32 = 1

// maxExtents bounds one block-status answer; the caller asks again for
// the rest (the Device contract allows stopping early).
const maxExtents = 4096

// Extents describes [off, off+n) in bitmap name: runs of dirty (flags
// StateDirty) and clean (0) bytes, contiguous from off. The range must be
// inside the volume; n == 0 returns none.
func (s *State) Extents(name string, off, n int64) ([]blockdev.Extent, error) {
	if off < 0 || n < 0 || off > s.size || n > s.size-off {
		return nil, fmt.Errorf("bitmap %s: range [%d, +%d) of %d bytes: %w", name, off, n, s.size, blockdev.ErrOutOfRange)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.findLocked(name)
	if b == nil {
		return nil, s.notFound(name)
	}
	var out []blockdev.Extent
	end := off + n
	for pos := off; pos < end && len(out) < maxExtents; {
		blk := pos / Granularity
		dirty := b.test(blk)
		stop := min(b.runEnd(blk, dirty)*Granularity, end)
		var flags uint32
		if dirty {
			flags = StateDirty
		}
		out = append(out, blockdev.Extent{Length: stop - pos, Flags: flags})
		pos = stop
	}
	return out, nil
}
