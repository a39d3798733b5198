package cbt

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MetaPrefix starts the NBD meta context of every bitmap.
const MetaPrefix = "qemu:dirty-bitmap:"

// BitmapInfo describes one bitmap.
type BitmapInfo struct {
	Name        string    `json:"name"`
	MetaContext string    `json:"meta_context"` // qemu:dirty-bitmap:NAME
	Created     time.Time `json:"created"`
	Granularity int64     `json:"granularity"` // bytes per bit
	DirtyBytes  int64     `json:"dirty_bytes"` // bytes in dirty blocks (the last block only up to the volume's end)
}

// Enable adds a bitmap, all clean: it records every write from now on.
// It fails with ErrBitmapExists, ErrInvalidName or ErrTooManyBitmaps.
// The caller holds the volume's I/O so that "from now on" is an instant.
func (s *State) Enable(name string, now time.Time) (BitmapInfo, error) {
	if err := CheckName(name); err != nil {
		return BitmapInfo{}, err
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return BitmapInfo{}, fmt.Errorf("volume %s: %w", s.volume, ErrClosed)
	case s.findLocked(name) != nil:
		s.mu.Unlock()
		return BitmapInfo{}, fmt.Errorf("volume %s already has a bitmap %s: %w", s.volume, name, ErrBitmapExists)
	case len(s.bitmaps) >= MaxBitmaps:
		s.mu.Unlock()
		return BitmapInfo{}, fmt.Errorf("volume %s has %d bitmaps, the most it can have: %w", s.volume, MaxBitmaps, ErrTooManyBitmaps)
	}
	b := newBitmap(name, now.UTC(), s.nbits)
	s.bitmaps = append(s.bitmaps, b)
	slices.SortFunc(s.bitmaps, func(x, y *bitmap) int { return strings.Compare(x.name, y.name) })
	info := s.infoLocked(b)
	s.mu.Unlock()

	if err := s.persistAll(); err != nil {
		s.mu.Lock()
		s.bitmaps = slices.DeleteFunc(s.bitmaps, func(x *bitmap) bool { return x == b })
		s.mu.Unlock()
		return BitmapInfo{}, fmt.Errorf("enable bitmap %s on volume %s: %w", name, s.volume, err)
	}
	return info, nil
}

// Remove forgets a bitmap. It is gone on disk before it stops being
// tracked in memory, so a crash in between never brings back a bitmap
// that missed writes.
func (s *State) Remove(name string) error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.mu.Lock()
	b := s.findLocked(name)
	if b == nil {
		s.mu.Unlock()
		return s.notFound(name)
	}
	keep := slices.DeleteFunc(slices.Clone(s.bitmaps), func(x *bitmap) bool { return x == b })
	img, err := s.imageLocked(keep)
	s.mu.Unlock()
	if err == nil {
		err = s.st.writeBitmaps(img)
	}
	if err != nil {
		return fmt.Errorf("remove bitmap %s of volume %s: %w", name, s.volume, err)
	}
	s.mu.Lock()
	s.bitmaps = slices.DeleteFunc(s.bitmaps, func(x *bitmap) bool { return x == b })
	s.mu.Unlock()
	return nil
}

// Clear resets a bitmap to all clean: it records the writes from now on.
// The caller holds the volume's I/O so that the reset is an instant.
func (s *State) Clear(name string) (BitmapInfo, error) {
	s.mu.Lock()
	b := s.findLocked(name)
	if b == nil {
		s.mu.Unlock()
		return BitmapInfo{}, s.notFound(name)
	}
	b.clearAll()
	info := s.infoLocked(b)
	s.mu.Unlock()
	if err := s.persistAll(); err != nil {
		return BitmapInfo{}, fmt.Errorf("clear bitmap %s of volume %s: %w", name, s.volume, err)
	}
	return info, nil
}

// MarkAll makes every block dirty in every bitmap and saves that, for a
// change of content the tracker does not see (a revert to a snapshot).
func (s *State) MarkAll() error {
	s.mu.Lock()
	for _, b := range s.bitmaps {
		b.setAll()
	}
	n := len(s.bitmaps)
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	if err := s.persistAll(); err != nil {
		return fmt.Errorf("mark volume %s all dirty: %w", s.volume, err)
	}
	return nil
}

// List describes the bitmaps, by name.
func (s *State) List() []BitmapInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BitmapInfo, 0, len(s.bitmaps))
	for _, b := range s.bitmaps {
		out = append(out, s.infoLocked(b))
	}
	return out
}

// Names are the bitmaps' names, sorted.
func (s *State) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.bitmaps))
	for i, b := range s.bitmaps {
		out[i] = b.name
	}
	return out
}

// Close is the clean stop: every bitmap is written and an empty activity
// log record marked clean follows, so the next Open adds nothing. Writes
// fail with ErrClosed afterwards. The caller stops I/O first.
func (s *State) Close() error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	img, err := s.imageLocked(s.bitmaps)
	s.mu.Unlock()
	if s.onDisk {
		if err == nil {
			err = s.st.writeBitmaps(img)
		}
		if err == nil {
			err = s.writeRecord(nil, true)
		}
	}
	err = errors.Join(err, s.st.close())
	if err != nil {
		return fmt.Errorf("save changed-block tracking of volume %s: %w", s.volume, err)
	}
	return nil
}

// Delete removes the files (the volume is being removed). Writes fail
// with ErrClosed afterwards.
func (s *State) Delete() error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.bitmaps = nil
	s.cond.Broadcast()
	s.mu.Unlock()
	s.onDisk = false
	if err := s.st.remove(); err != nil {
		return fmt.Errorf("delete changed-block tracking of volume %s: %w", s.volume, err)
	}
	return nil
}

// persistAll rewrites the whole bitmap file from memory; the first time
// it also writes an activity log record, so that a bitmap file never
// exists without one after the call.
func (s *State) persistAll() error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.mu.Lock()
	img, err := s.imageLocked(s.bitmaps)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := s.st.writeBitmaps(img); err != nil {
		return err
	}
	s.onDisk = true
	if s.alSeq == 0 {
		s.mu.Lock()
		exts := make([]int64, 0, len(s.hot))
		for e := range s.hot {
			exts = append(exts, e)
		}
		s.mu.Unlock()
		slices.Sort(exts)
		return s.writeRecord(exts, false)
	}
	return nil
}

// imageLocked encodes a whole bitmap file holding bms.
func (s *State) imageLocked(bms []*bitmap) ([]byte, error) {
	h := &Header{Volume: s.volume, Size: s.size}
	for _, b := range bms {
		h.Bitmaps = append(h.Bitmaps, Entry{Name: b.name, Created: b.created})
	}
	hdr, err := encodeHeader(h)
	if err != nil {
		return nil, err
	}
	np := pagesPer(s.size)
	img := make([]byte, pageSize*(1+int64(len(bms))*np))
	copy(img, hdr)
	for k, b := range bms {
		for p := range np {
			idx := 1 + int64(k)*np + p
			encodePage(img[idx*pageSize:], b.page(p), uint32(idx))
		}
	}
	return img, nil
}

func (s *State) findLocked(name string) *bitmap {
	for _, b := range s.bitmaps {
		if b.name == name {
			return b
		}
	}
	return nil
}

func (s *State) notFound(name string) error {
	return fmt.Errorf("volume %s has no bitmap %s (see `extrasphere cbt list %s`): %w", s.volume, name, s.volume, ErrBitmapNotFound)
}

func (s *State) infoLocked(b *bitmap) BitmapInfo {
	dirty := b.count() * Granularity
	if b.nbits > 0 && b.test(b.nbits-1) {
		dirty -= b.nbits*Granularity - s.size // the last block is partial
	}
	return BitmapInfo{Name: b.name, MetaContext: MetaPrefix + b.name, Created: b.created, Granularity: Granularity, DirtyBytes: dirty}
}
