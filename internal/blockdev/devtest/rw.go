package devtest

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

func testCaps(t *testing.T, s *suite) {
	m := s.device(t)
	c := m.caps
	pow2 := func(v uint32) bool { return v > 0 && v&(v-1) == 0 }
	if !pow2(c.MinBlock) {
		t.Errorf("MinBlock %d: want a power of two >= 1", c.MinBlock)
	}
	if !pow2(c.PrefBlock) || c.PrefBlock < c.MinBlock {
		t.Errorf("PrefBlock %d: want a power of two >= MinBlock %d", c.PrefBlock, c.MinBlock)
	}
	if c.MaxPayload < c.PrefBlock || c.MaxPayload%c.MinBlock != 0 {
		t.Errorf("MaxPayload %d: want a multiple of MinBlock >= PrefBlock %d", c.MaxPayload, c.PrefBlock)
	}
	if c.FastZero && !c.Zero {
		t.Errorf("FastZero without Zero")
	}
	if got := m.dev.Caps(); !reflect.DeepEqual(got, c) {
		t.Errorf("Caps changed between calls: %+v then %+v", c, got)
	}
	if c.ReadOnly {
		t.Errorf("the opener returned a read-only device; the suite needs a writable one")
	}
}

func testFreshReadsZero(t *testing.T, s *suite) {
	m := s.device(t)
	m.checkAll()
}

func testReadWriteRoundTrip(t *testing.T, s *suite) {
	m := s.device(t)
	for i, sp := range m.spans() {
		var flags blockdev.WriteFlags
		if i%2 == 1 {
			flags = m.fua()
		}
		m.write(sp.Off, m.random(sp.Len), flags)
		m.check(sp.Off, sp.Len)
	}
	// Every neighbour kept its bytes.
	m.checkAll()
}

func testLastBlock(t *testing.T, s *suite) {
	m := s.device(t)
	m.write(m.size-m.mb, m.random(m.mb), 0)
	m.check(m.size-m.mb, m.mb)
	pb := int64(m.caps.PrefBlock)
	if pb <= m.size {
		m.write(m.size-pb, m.random(pb), m.fua())
	}
	m.checkAll()
}

func testZeroLength(t *testing.T, s *suite) {
	m := s.device(t)
	m.fill()
	ctx := t.Context()
	for _, off := range []int64{0, m.mb, m.size} {
		if err := m.dev.ReadAt(ctx, nil, off); err != nil {
			t.Errorf("ReadAt(len 0, off %d): %v", off, err)
		}
		if err := m.dev.WriteAt(ctx, []byte{}, off, 0); err != nil {
			t.Errorf("WriteAt(len 0, off %d): %v", off, err)
		}
		if err := m.dev.WriteZeroes(ctx, off, 0, 0); err != nil {
			t.Errorf("WriteZeroes(len 0, off %d): %v", off, err)
		}
		if err := m.dev.Trim(ctx, off, 0, 0); err != nil {
			t.Errorf("Trim(len 0, off %d): %v", off, err)
		}
		if ext, err := m.dev.BlockStatus(ctx, blockdev.MetaBaseAllocation, off, 0); err != nil && !errors.Is(err, blockdev.ErrUnknownContext) || len(ext) != 0 {
			t.Errorf("BlockStatus(len 0, off %d) = %v, %v; want no extents", off, ext, err)
		}
	}
	m.checkAll()
}

func testOutOfRange(t *testing.T, s *suite) {
	m := s.device(t)
	m.fill()
	ctx := t.Context()
	size, mb := m.size, m.mb
	buf := func(n int64) []byte { return make([]byte, n) }
	ops := map[string]func() error{
		"ReadAtEnd":          func() error { return m.dev.ReadAt(ctx, buf(mb), size) },
		"ReadAcrossEnd":      func() error { return m.dev.ReadAt(ctx, buf(2*mb), size-mb) },
		"ReadNegative":       func() error { return m.dev.ReadAt(ctx, buf(mb), -mb) },
		"ReadPastEnd":        func() error { return m.dev.ReadAt(ctx, buf(mb), size+mb) },
		"WriteAtEnd":         func() error { return m.dev.WriteAt(ctx, buf(mb), size, 0) },
		"WriteAcrossEnd":     func() error { return m.dev.WriteAt(ctx, buf(2*mb), size-mb, 0) },
		"WriteNegative":      func() error { return m.dev.WriteAt(ctx, buf(mb), -mb, 0) },
		"ZeroesAcrossEnd":    func() error { return m.dev.WriteZeroes(ctx, size-mb, 2*mb, 0) },
		"ZeroesNegative":     func() error { return m.dev.WriteZeroes(ctx, -mb, mb, 0) },
		"ZeroesNegativeLen":  func() error { return m.dev.WriteZeroes(ctx, 0, -mb, 0) },
		"ZeroesHuge":         func() error { return m.dev.WriteZeroes(ctx, mb, math.MaxInt64, 0) },
		"ZeroesAll+1":        func() error { return m.dev.WriteZeroes(ctx, 0, size+mb, 0) },
		"TrimAtEnd":          func() error { return m.dev.Trim(ctx, size, mb, 0) },
		"TrimAcrossEnd":      func() error { return m.dev.Trim(ctx, size-mb, 2*mb, 0) },
		"TrimNegativeLen":    func() error { return m.dev.Trim(ctx, mb, -mb, 0) },
		"TrimHuge":           func() error { return m.dev.Trim(ctx, math.MaxInt64-mb+1, math.MaxInt64, 0) },
		"BlockStatusAtEnd":   func() error { return m.blockStatusErr(size, mb) },
		"BlockStatusAcross":  func() error { return m.blockStatusErr(size-mb, 2*mb) },
		"BlockStatusNegOff":  func() error { return m.blockStatusErr(-mb, mb) },
		"BlockStatusAllPlus": func() error { return m.blockStatusErr(0, size+mb) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, blockdev.ErrOutOfRange) {
			t.Errorf("%s = %v, want ErrOutOfRange", name, err)
		}
	}
	m.checkAll()
}

// blockStatusErr asks for base:allocation (or the first context the
// device serves) and returns the error.
func (m *model) blockStatusErr(off, n int64) error {
	meta := blockdev.MetaBaseAllocation
	if len(m.caps.MetaContexts) > 0 {
		meta = m.caps.MetaContexts[0]
	} else {
		return blockdev.CheckRange(m.size, uint32(m.mb), off, n) // nothing to ask
	}
	_, err := m.dev.BlockStatus(m.t.Context(), meta, off, n)
	return err
}

func testMisaligned(t *testing.T, s *suite) {
	m := s.device(t)
	if m.mb == 1 {
		t.Logf("MinBlock 1: every offset is aligned, nothing to test")
		return
	}
	m.fill()
	ctx := t.Context()
	mb := m.mb
	ops := map[string]func() error{
		"ReadOffset":    func() error { return m.dev.ReadAt(ctx, make([]byte, mb), 1) },
		"ReadLength":    func() error { return m.dev.ReadAt(ctx, make([]byte, 1), 0) },
		"WriteOffset":   func() error { return m.dev.WriteAt(ctx, make([]byte, mb), mb/2, 0) },
		"WriteLength":   func() error { return m.dev.WriteAt(ctx, make([]byte, mb+1), 0, 0) },
		"ZeroesOffset":  func() error { return m.dev.WriteZeroes(ctx, 1, mb, 0) },
		"ZeroesLength":  func() error { return m.dev.WriteZeroes(ctx, 0, mb-1, 0) },
		"TrimOffset":    func() error { return m.dev.Trim(ctx, mb+1, mb, 0) },
		"BlockStatusLn": func() error { return m.blockStatusErr(0, mb+1) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, blockdev.ErrMisaligned) {
			t.Errorf("%s = %v, want ErrMisaligned", name, err)
		}
	}
	m.checkAll()
}

func testFlush(t *testing.T, s *suite) {
	m := s.device(t)
	if err := m.dev.Flush(t.Context()); err != nil {
		t.Fatalf("Flush with nothing written: %v", err)
	}
	m.write(0, m.random(4096), 0)
	m.write(m.size-m.mb, m.random(m.mb), 0)
	if err := m.dev.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	m.checkAll()
}

func testClose(t *testing.T, s *suite) {
	m := s.device(t)
	m.write(0, m.random(4096), 0)
	ctx := t.Context()
	if err := m.dev.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mb := m.mb
	ops := map[string]func() error{
		"ReadAt":      func() error { return m.dev.ReadAt(ctx, make([]byte, mb), 0) },
		"WriteAt":     func() error { return m.dev.WriteAt(ctx, make([]byte, mb), 0, 0) },
		"WriteZeroes": func() error { return m.dev.WriteZeroes(ctx, 0, mb, 0) },
		"Trim":        func() error { return m.dev.Trim(ctx, 0, mb, 0) },
		"Flush":       func() error { return m.dev.Flush(ctx) },
		"Close":       func() error { return m.dev.Close() },
	}
	for _, meta := range m.caps.MetaContexts {
		ops["BlockStatus "+meta] = func() error { _, err := m.dev.BlockStatus(ctx, meta, 0, mb); return err }
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if got := m.dev.Size(); got != s.size {
		t.Errorf("Size after Close = %d, want %d", got, s.size)
	}
}

func testReadOnly(t *testing.T, s *suite, open func(t *testing.T, content []byte) blockdev.Device) {
	content := randomBytes(rand.New(rand.NewPCG(7, 7)), s.size)
	dev := open(t, content)
	t.Cleanup(func() {
		if err := dev.Close(); err != nil && !errors.Is(err, blockdev.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	m := newModel(t, dev)
	copy(m.shadow, content)
	if !m.caps.ReadOnly {
		t.Fatalf("Caps().ReadOnly = false on a read-only device")
	}
	if m.caps.FUA || m.caps.FastZero {
		t.Errorf("read-only device advertises FUA %v / FastZero %v", m.caps.FUA, m.caps.FastZero)
	}
	m.checkAll()
	ctx := t.Context()
	mb := m.mb
	ops := map[string]func() error{
		"WriteAt":        func() error { return dev.WriteAt(ctx, make([]byte, mb), 0, 0) },
		"WriteAtLast":    func() error { return dev.WriteAt(ctx, make([]byte, mb), s.size-mb, 0) },
		"WriteZeroes":    func() error { return dev.WriteZeroes(ctx, 0, 4096, 0) },
		"WriteZeroesAll": func() error { return dev.WriteZeroes(ctx, 0, s.size, 0) },
		"Trim":           func() error { return dev.Trim(ctx, 0, s.size, 0) },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, blockdev.ErrReadOnly) {
			t.Errorf("%s on a read-only device = %v, want ErrReadOnly", name, err)
		}
	}
	if err := dev.Flush(ctx); err != nil {
		t.Errorf("Flush on a read-only device: %v", err)
	}
	m.checkAll()
	m.walkStatus(0, s.size)
}
