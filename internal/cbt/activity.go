package cbt

import (
	"container/list"
	"fmt"
	"slices"
)

// hotExt is one extent of the activity log in memory.
type hotExt struct {
	idx  int64
	ref  int           // writes between pin and unpin; an extent in use is never evicted
	gen  uint64        // the hot-set generation that added it: durable once durableGen >= gen
	elem *list.Element // in State.lru
}

// begin is called before a write, zero or trim of [off, off+n) is passed
// down. When it returns without error the range is dirty in every bitmap
// in memory and, on disk, either in the bitmap file or inside extents of
// a durable AL record. The caller passes the request down, then calls
// done. n must be > 0 and the range inside the volume.
func (s *State) begin(off, n int64) (done func(), err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("volume %s: %w", s.volume, ErrClosed)
	}
	if len(s.bitmaps) == 0 {
		s.mu.Unlock()
		return noop, nil
	}
	fb, lb := off/Granularity, (off+n-1)/Granularity
	fe, le := off/s.extSize, (off+n-1)/s.extSize
	if le-fe+1 > s.direct {
		s.markLocked(fb, lb)
		s.mu.Unlock()
		return noop, s.persistBlocks(fb, lb)
	}
	if err := s.reserveLocked(fe, le); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	pinned := make([]*hotExt, 0, le-fe+1)
	var need uint64
	for e := fe; e <= le; e++ {
		h := s.hot[e]
		if h == nil {
			s.gen++
			h = &hotExt{idx: e, gen: s.gen}
			h.elem = s.lru.PushFront(h)
			s.hot[e] = h
		} else {
			s.lru.MoveToFront(h.elem)
		}
		h.ref++
		need = max(need, h.gen)
		pinned = append(pinned, h)
	}
	for s.durableGen < need {
		if s.closed {
			err = fmt.Errorf("volume %s: %w", s.volume, ErrClosed)
		} else if !s.alWriting {
			err = s.writeALLocked()
		} else {
			s.cond.Wait()
			continue
		}
		if err != nil {
			s.unpinLocked(pinned)
			s.mu.Unlock()
			return nil, err
		}
	}
	s.markLocked(fb, lb)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.unpinLocked(pinned)
		s.mu.Unlock()
	}, nil
}

func noop() {}

// reserveLocked waits until the extents fe..le that are not hot fit in
// the AL, evicting unused extents as needed. Nothing is pinned while it
// waits, so waiters never hold slots others need.
func (s *State) reserveLocked(fe, le int64) error {
	for {
		if s.closed {
			return fmt.Errorf("volume %s: %w", s.volume, ErrClosed)
		}
		need := 0
		for e := fe; e <= le; e++ {
			if s.hot[e] == nil {
				need++
			}
		}
		over := len(s.hot) + need - s.slots
		if over <= 0 || s.evictLocked(over, fe, le) {
			return nil
		}
		s.cond.Wait()
	}
}

// evictLocked removes at least over unused extents (outside fe..le),
// least recently used first, in a batch of up to slots/16 so the AL
// records that follow are amortised. It evicts nothing and returns false
// if fewer than over can go. Evicted extents leave the on-disk AL with
// the next record, after their bitmap pages are written.
func (s *State) evictLocked(over int, fe, le int64) bool {
	var cand []*hotExt
	want := max(over, s.slots/16)
	for el := s.lru.Back(); el != nil && len(cand) < want; el = el.Prev() {
		h := el.Value.(*hotExt)
		if h.ref == 0 && (h.idx < fe || h.idx > le) {
			cand = append(cand, h)
		}
	}
	if len(cand) < over {
		return false
	}
	for _, h := range cand {
		s.lru.Remove(h.elem)
		delete(s.hot, h.idx)
		s.evicted = append(s.evicted, h.idx)
	}
	s.gen++
	return true
}

// unpinLocked releases extents pinned by begin.
func (s *State) unpinLocked(pinned []*hotExt) {
	freed := false
	for _, h := range pinned {
		h.ref--
		freed = freed || h.ref == 0
	}
	if freed {
		s.cond.Broadcast()
	}
}

// markLocked sets blocks fb..lb dirty in every bitmap.
func (s *State) markLocked(fb, lb int64) {
	for _, b := range s.bitmaps {
		b.setRange(fb, lb)
	}
}

// writeALLocked persists the hot set: first the bitmap pages of the
// extents evicted since the last record, then the record. Called and
// returns with mu held; drops it for the I/O.
func (s *State) writeALLocked() error {
	s.alWriting = true
	s.mu.Unlock()
	s.ioMu.Lock()
	s.mu.Lock()
	gen := s.gen
	exts := make([]int64, 0, len(s.hot))
	for e := range s.hot {
		exts = append(exts, e)
	}
	slices.Sort(exts)
	evicted := s.evicted
	s.evicted = nil
	var pages []pageWrite
	seen := map[int64]bool{}
	for _, e := range evicted {
		pages = s.appendPagesLocked(pages, seen, e*s.extBlocks, min((e+1)*s.extBlocks, s.nbits)-1)
	}
	s.mu.Unlock()

	var err error
	if len(pages) > 0 {
		err = s.st.writePages(pages)
	}
	if err == nil {
		err = s.writeRecord(exts, false)
	}
	s.ioMu.Unlock()

	s.mu.Lock()
	s.alWriting = false
	if err != nil {
		s.evicted = append(s.evicted, evicted...)
		err = fmt.Errorf("volume %s: write activity log: %w", s.volume, err)
	} else {
		s.durableGen = max(s.durableGen, gen)
	}
	s.cond.Broadcast()
	return err
}

// writeRecord writes the next AL record. ioMu is held.
func (s *State) writeRecord(exts []int64, clean bool) error {
	s.alSeq++
	img, err := encodeRecord(&Record{Seq: s.alSeq, Clean: clean, Size: s.size, ExtentSize: s.extSize, Extents: exts})
	if err == nil {
		err = s.st.writeAL(int(s.alSeq%2), img)
	}
	if err != nil {
		s.alSeq-- // the same slot again next time: the other one holds the last good record
	}
	return err
}

// persistBlocks writes the bitmap pages holding blocks fb..lb, in every
// bitmap, with their current (already marked) content.
func (s *State) persistBlocks(fb, lb int64) error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	s.mu.Lock()
	pages := s.appendPagesLocked(nil, map[int64]bool{}, fb, lb)
	s.mu.Unlock()
	if err := s.st.writePages(pages); err != nil {
		return fmt.Errorf("volume %s: write bitmap pages: %w", s.volume, err)
	}
	return nil
}

// appendPagesLocked appends the encoded pages that hold blocks fb..lb in
// every bitmap, skipping the page indexes in seen (and adding to it).
func (s *State) appendPagesLocked(out []pageWrite, seen map[int64]bool, fb, lb int64) []pageWrite {
	np := pagesPer(s.size)
	for k, b := range s.bitmaps {
		for p := fb / pageBits; p <= lb/pageBits; p++ {
			idx := 1 + int64(k)*np + p
			if seen[idx] {
				continue
			}
			seen[idx] = true
			data := make([]byte, pageSize)
			encodePage(data, b.page(p), uint32(idx))
			out = append(out, pageWrite{index: idx, data: data})
		}
	}
	return out
}
