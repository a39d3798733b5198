package sparse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Failpoints of Flush, in the order they are reached.
const (
	FailpointBeforeDataSync = "sparse.flush.before-data-sync" // grain data written, not synced
	FailpointBeforeGTWrite  = "sparse.flush.before-gt-write"  // data synced, grain tables not written
	FailpointBeforeGTSync   = "sparse.flush.before-gt-sync"   // grain tables written, not synced
)

// Flush makes every grain write, allocation and zeroing that completed
// before it durable, in this order:
//
//  1. copy the dirty grain table sectors (under mu: every entry in the
//     copy points to data whose write has completed);
//  2. fdatasync: that data is on stable storage;
//  3. write each copied sector to the primary grain table, then to the
//     redundant one;
//  4. fdatasync: the entries are on stable storage.
//
// So a grain table entry never reaches the disk before the data it points
// to. Entries changed during a Flush are written by the next one. If a
// step fails the copied sectors stay dirty; a failed fdatasync also makes
// the extent refuse further writes and flushes (its page cache may have
// dropped data), so it must be reopened. On a read-only extent Flush does
// nothing.
func (e *Extent) Flush(ctx context.Context) error {
	if err := e.acquire(ctx, "flush", false); err != nil {
		return err
	}
	defer e.io.RUnlock()
	if e.readOnly {
		return nil
	}
	e.flushMu.Lock()
	defer e.flushMu.Unlock()

	e.mu.Lock()
	if e.broken != nil {
		e.mu.Unlock()
		return fmt.Errorf("flush %s: extent unusable after a failed sync, reopen it: %w", e.path, e.broken)
	}
	snap := e.snapshotDirty()
	e.mu.Unlock()

	if err := e.flushSnapshot(snap); err != nil {
		e.mu.Lock()
		for _, s := range snap {
			e.dirty[s.index] = struct{}{}
		}
		e.mu.Unlock()
		return fmt.Errorf("flush %s: %w", e.path, err)
	}
	return nil
}

// gtSector is a copy of one 512-byte grain table sector.
type gtSector struct {
	index int64 // grain / 128
	data  []byte
}

// snapshotDirty copies the dirty grain table sectors in file order and
// clears their dirty marks. The caller holds mu.
func (e *Extent) snapshotDirty() []gtSector {
	snap := make([]gtSector, 0, len(e.dirty))
	for s := range e.dirty {
		gt := e.tables[s/(gtesPerGT/gtesPerSector)]
		first := int(s%(gtesPerGT/gtesPerSector)) * gtesPerSector
		b := make([]byte, sectorSize)
		for j := range gtesPerSector {
			binary.LittleEndian.PutUint32(b[j*gteBytes:], gt.entries[first+j].Load())
		}
		snap = append(snap, gtSector{index: s, data: b})
	}
	clear(e.dirty)
	slices.SortFunc(snap, func(a, b gtSector) int { return int(a.index - b.index) })
	return snap
}

// flushSnapshot runs steps 2 to 4 of Flush.
func (e *Extent) flushSnapshot(snap []gtSector) error {
	if err := e.failpoint(FailpointBeforeDataSync); err != nil {
		return err
	}
	if err := e.sync(); err != nil {
		return err
	}
	if len(snap) == 0 {
		return nil
	}
	if err := e.failpoint(FailpointBeforeGTWrite); err != nil {
		return err
	}
	if err := e.writeSectors(snap, func(gt *grainTable) uint32 { return gt.primary }); err != nil {
		return fmt.Errorf("write grain tables: %w", err)
	}
	if e.hdr.Flags&flagRedundantGD != 0 {
		if err := e.writeSectors(snap, func(gt *grainTable) uint32 { return gt.redundant }); err != nil {
			return fmt.Errorf("write redundant grain tables: %w", err)
		}
	}
	if err := e.failpoint(FailpointBeforeGTSync); err != nil {
		return err
	}
	return e.sync()
}

// writeSectors writes the copied sectors into the tables at(gt), one
// write per run of sectors that are adjacent in the file.
func (e *Extent) writeSectors(snap []gtSector, at func(*grainTable) uint32) error {
	const perGT = gtesPerGT / gtesPerSector
	offset := func(s gtSector) int64 {
		return int64(at(e.tables[s.index/perGT]))*sectorSize + s.index%perGT*sectorSize
	}
	for i := 0; i < len(snap); {
		start := offset(snap[i])
		run := snap[i].data
		j := i + 1
		for ; j < len(snap) && offset(snap[j]) == start+int64(len(run)) && len(run) < 1<<20; j++ {
			if j == i+1 {
				run = slices.Clone(run)
			}
			run = append(run, snap[j].data...)
		}
		if err := e.file.writeAt(run, start); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// sync is fdatasync; a failure is sticky.
func (e *Extent) sync() error {
	err := e.file.datasync()
	if err != nil {
		e.mu.Lock()
		e.broken = errors.Join(e.broken, err)
		e.mu.Unlock()
	}
	return err
}
