package cbt

import (
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// MarkRange makes [off, off+n) dirty in bitmap name, durably: its bitmap
// pages are written and fdatasync'ed before it returns. The mirror uses
// it to re-record what its replica lacks when a reset raced a failure.
func (s *State) MarkRange(name string, off, n int64) error {
	if off < 0 || n <= 0 || off >= s.size {
		return nil
	}
	n = min(n, s.size-off)
	fb, lb := off/Granularity, (off+n-1)/Granularity
	s.mu.Lock()
	b := s.findLocked(name)
	if b == nil {
		s.mu.Unlock()
		return s.notFound(name)
	}
	b.setRange(fb, lb)
	s.mu.Unlock()
	if err := s.persistBlocks(fb, lb); err != nil {
		return fmt.Errorf("mark bitmap %s: %w", name, err)
	}
	return nil
}

// Ranges lists the dirty runs of bitmap name, clipped to the volume.
func (s *State) Ranges(name string) ([]blockdev.Range, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.findLocked(name)
	if b == nil {
		return nil, s.notFound(name)
	}
	return s.rangesLocked(b), nil
}

// Has reports whether bitmap name exists.
func (s *State) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findLocked(name) != nil
}
