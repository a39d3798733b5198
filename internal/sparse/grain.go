package sparse

import (
	"context"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// ReadGrain fills p from grain at byte off inside it. A Data grain is read
// from the file, a Zero grain reads as zeros; an Unallocated grain fails
// with ErrNotAllocated (the caller reads the layer below). off+len(p) must
// not pass GrainLen(grain) (ErrGrainRange).
func (e *Extent) ReadGrain(ctx context.Context, grain int64, off int, p []byte) error {
	if err := e.acquire(ctx, "read grain", false); err != nil {
		return err
	}
	defer e.io.RUnlock()
	if err := e.checkRange(grain, off, len(p)); err != nil {
		return fmt.Errorf("read grain %d of %s: %w", grain, e.path, err)
	}
	st := e.Lookup(grain)
	switch st.Kind {
	case Unallocated:
		return fmt.Errorf("read grain %d of %s: %w", grain, e.path, ErrNotAllocated)
	case Zero:
		clear(p)
		return nil
	}
	if err := e.file.readAt(p, int64(st.Sector)*sectorSize+int64(off)); err != nil {
		return fmt.Errorf("read grain %d: %w", grain, err)
	}
	return nil
}

// WriteGrain writes p into the Data grain at byte off inside it, in place
// (ErrNotAllocated for any other grain). Durable after the next Flush.
func (e *Extent) WriteGrain(ctx context.Context, grain int64, off int, p []byte) error {
	if err := e.acquire(ctx, "write grain", true); err != nil {
		return err
	}
	defer e.io.RUnlock()
	if err := e.checkWrite(grain, off, len(p)); err != nil {
		return fmt.Errorf("write grain %d of %s: %w", grain, e.path, err)
	}
	st := e.Lookup(grain)
	if st.Kind != Data {
		return fmt.Errorf("write grain %d (%s) of %s: %w", grain, st.Kind, e.path, ErrNotAllocated)
	}
	if err := e.file.writeAt(p, int64(st.Sector)*sectorSize+int64(off)); err != nil {
		return fmt.Errorf("write grain %d: %w", grain, err)
	}
	return nil
}

// AllocateGrain stores a new grain: full is its whole content (the caller
// merged a partial write with the layer below), GrainLen(grain) or
// GrainSize() bytes. The data is written at the end of the file, then the
// in-memory entry points to it; the entry reaches the file at the next
// Flush, after the data is synced. The grain must not hold data already
// (ErrAllocated); a Zero grain becomes Data. Allocations of different
// grains may run concurrently.
func (e *Extent) AllocateGrain(ctx context.Context, grain int64, full []byte) error {
	if err := e.acquire(ctx, "allocate grain", true); err != nil {
		return err
	}
	defer e.io.RUnlock()
	if err := e.checkWrite(grain, 0, 0); err != nil {
		return fmt.Errorf("allocate grain %d of %s: %w", grain, e.path, err)
	}
	if n := int64(len(full)); n != e.GrainLen(grain) && n != e.grainSize {
		return fmt.Errorf("allocate grain %d of %s with %d bytes, want %d: %w", grain, e.path, n, e.GrainLen(grain), ErrGrainRange)
	}
	if st := e.Lookup(grain); st.Kind == Data {
		return fmt.Errorf("allocate grain %d of %s (at sector %d): %w", grain, e.path, st.Sector, ErrAllocated)
	}
	off, err := e.reserve()
	if err != nil {
		return fmt.Errorf("allocate grain %d of %s: %w", grain, e.path, err)
	}
	if len(full) < int(e.grainSize) {
		// The last grain of an odd capacity: write a whole grain so the
		// file stays grain-aligned.
		buf := make([]byte, e.grainSize)
		copy(buf, full)
		full = buf
	}
	if err := e.file.writeAt(full, int64(off)); err != nil {
		return fmt.Errorf("allocate grain %d: %w", grain, err) // the reserved slot leaks
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setEntry(grain, uint32(off/sectorSize))
	return nil
}

// reserve takes the next grain slot at the end of the file.
func (e *Extent) reserve() (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	off := e.next
	if (off+uint64(e.grainSize))/sectorSize > maxCapSectors {
		return 0, fmt.Errorf("%w: %w", ErrExtentFull, blockdev.ErrNoSpace)
	}
	e.next += uint64(e.grainSize)
	return off, nil
}

// SetZero makes grain a zeroed grain (entry 1): it reads as zeros and hides
// the layer below. A Data grain's old content is left in the file, unused.
// Needs the zeroed-grain flag (ZeroGrains; ErrUnsupported otherwise).
// Durable after the next Flush.
func (e *Extent) SetZero(ctx context.Context, grain int64) error {
	if err := e.acquire(ctx, "zero grain", true); err != nil {
		return err
	}
	defer e.io.RUnlock()
	if err := e.checkWrite(grain, 0, 0); err != nil {
		return fmt.Errorf("zero grain %d of %s: %w", grain, e.path, err)
	}
	if !e.ZeroGrains() {
		return fmt.Errorf("zero grain %d of %s: no zeroed-grain flag in the header: %w", grain, e.path, ErrUnsupported)
	}
	if e.Lookup(grain).Kind == Zero {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setEntry(grain, gteZero)
	return nil
}

// setEntry stores a grain table entry and marks its sector dirty. The
// caller holds mu; checkWrite made sure the table exists.
func (e *Extent) setEntry(grain int64, v uint32) {
	e.tables[grain/gtesPerGT].entries[grain%gtesPerGT].Store(v)
	e.dirty[grain/gtesPerSector] = struct{}{}
}

// checkRange checks a grain index and a byte range inside the grain.
func (e *Extent) checkRange(grain int64, off, n int) error {
	if grain < 0 || grain >= e.geo.grains {
		return fmt.Errorf("grain %d of %d: %w", grain, e.geo.grains, ErrGrainRange)
	}
	if off < 0 || n < 0 || int64(off) > e.GrainLen(grain)-int64(n) {
		return fmt.Errorf("bytes [%d, +%d) of a %d-byte grain: %w", off, n, e.GrainLen(grain), ErrGrainRange)
	}
	return nil
}

// checkWrite is checkRange for the methods that change the extent: it also
// refuses after a failed sync (the page cache may have dropped writes) and
// where the grain table is not allocated (only possible read-only).
func (e *Extent) checkWrite(grain int64, off, n int) error {
	if err := e.checkRange(grain, off, n); err != nil {
		return err
	}
	e.mu.Lock()
	broken := e.broken
	e.mu.Unlock()
	if broken != nil {
		return fmt.Errorf("extent unusable after a failed sync, reopen it: %w", broken)
	}
	if e.tables[grain/gtesPerGT] == nil {
		return fmt.Errorf("grain table %d not allocated: %w", grain/gtesPerGT, ErrUnsupported)
	}
	return nil
}
