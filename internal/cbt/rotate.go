package cbt

import (
	"fmt"
	"slices"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// Rotated is what Rotate took from the old bitmap.
type Rotated struct {
	Dirty   []blockdev.Range // the old bitmap's dirty ranges, clipped to the volume
	Created time.Time        // when the old bitmap was created or last rotated; zero if there was none
	Next    BitmapInfo
}

// Rotate starts a new generation of bitmap name at now: the bitmap is
// reset to clean with Created = now, durably, and its old dirty ranges
// are returned. A backup does this at its snapshot's instant (the caller
// holds the volume's I/O): the ranges are what changed since the previous
// rotation, which is the previous backup exactly when that backup
// recorded Rotated.Created as its own Next.Created. A missing bitmap is
// enabled (Created zero: no history, read everything).
func (s *State) Rotate(name string, now time.Time) (Rotated, error) {
	s.mu.Lock()
	b := s.findLocked(name)
	if b == nil {
		s.mu.Unlock()
		info, err := s.Enable(name, now)
		return Rotated{Next: info}, err
	}
	// The new generation must differ from the old even on a coarse clock.
	now = now.UTC()
	if !now.After(b.created) {
		now = b.created.Add(time.Nanosecond)
	}
	old := Rotated{Created: b.created, Dirty: s.rangesLocked(b)}
	words := slices.Clone(b.words)
	b.clearAll()
	b.created = now
	s.mu.Unlock()
	if err := s.persistAll(); err != nil {
		// Put the old generation back: nothing was lost in memory.
		s.mu.Lock()
		for i := range b.words {
			b.words[i] |= words[i]
		}
		b.created = old.Created
		s.mu.Unlock()
		return Rotated{}, fmt.Errorf("rotate bitmap %s of volume %s: %w", name, s.volume, err)
	}
	s.mu.Lock()
	old.Next = s.infoLocked(b)
	s.mu.Unlock()
	return old, nil
}

// rangesLocked lists b's dirty runs in bytes, clipped to the volume.
func (s *State) rangesLocked(b *bitmap) []blockdev.Range {
	var out []blockdev.Range
	for blk := int64(0); blk < b.nbits; {
		dirty := b.test(blk)
		end := b.runEnd(blk, dirty)
		if dirty {
			off := blk * Granularity
			out = append(out, blockdev.Range{Off: off, Len: min(end*Granularity, s.size) - off})
		}
		blk = end
	}
	return out
}
