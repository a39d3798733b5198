package devtest

import (
	"errors"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

func testBlockStatus(t *testing.T, s *suite) {
	m := s.device(t)
	ctx := t.Context()
	if _, err := m.dev.BlockStatus(ctx, "extrasphere:no-such-context", 0, m.mb); !errors.Is(err, blockdev.ErrUnknownContext) {
		t.Errorf("BlockStatus(unknown context) = %v, want ErrUnknownContext", err)
	}
	if !slices.Contains(m.caps.MetaContexts, blockdev.MetaBaseAllocation) {
		if _, err := m.dev.BlockStatus(ctx, blockdev.MetaBaseAllocation, 0, m.mb); !errors.Is(err, blockdev.ErrUnknownContext) {
			t.Errorf("BlockStatus(base:allocation) not in MetaContexts = %v, want ErrUnknownContext", err)
		}
		return
	}
	m.walkStatus(0, m.size) // fresh device
	// A layout of data, zeroed ranges (punched and not) and trimmed ones.
	m.write(0, m.random(4096), 0)
	m.write(64<<10, m.random(100<<10), 0)
	m.write(m.size-m.mb, m.random(m.mb), 0)
	m.zero(80<<10, 32<<10, 0)
	m.zero(128<<10, 8<<10, blockdev.NoHole)
	m.write(512<<10, m.random(256<<10), 0)
	if err := m.dev.Trim(ctx, 600<<10, 64<<10, 0); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	copy(m.shadow[600<<10:], m.read(600<<10, 64<<10)) // old-or-zero, checked by the Trim subtest
	for _, sp := range append(m.spans(), blockdev.Range{Off: 0, Len: m.size}, blockdev.Range{Off: m.mb, Len: m.size - 2*m.mb}, blockdev.Range{Off: 70 << 10, Len: 500 << 10}) {
		m.walkStatus(sp.Off, sp.Len)
	}
	m.checkAll()
}

// walkStatus asks for base:allocation over [off, off+n), asking again
// where the device stops early, and checks every reply: contiguous from
// the asked offset, non-empty, within the range, only known flags, and
// every range flagged zero really reads as zeros.
func (m *model) walkStatus(off, n int64) {
	m.t.Helper()
	if !slices.Contains(m.caps.MetaContexts, blockdev.MetaBaseAllocation) {
		return
	}
	pos, end := off, off+n
	for calls := 0; pos < end; calls++ {
		if calls > int(n) {
			m.t.Fatalf("BlockStatus over [%d, +%d) makes no progress", off, n)
		}
		ext, err := m.dev.BlockStatus(m.t.Context(), blockdev.MetaBaseAllocation, pos, end-pos)
		if err != nil {
			m.t.Fatalf("BlockStatus(off %d, len %d): %v", pos, end-pos, err)
		}
		if len(ext) == 0 {
			m.t.Fatalf("BlockStatus(off %d, len %d) returned no extents", pos, end-pos)
		}
		for _, e := range ext {
			if e.Length <= 0 || e.Length > end-pos {
				m.t.Fatalf("BlockStatus(off %d): extent length %d with %d bytes left (%v)", pos, e.Length, end-pos, ext)
			}
			if e.Flags&^(blockdev.StateHole|blockdev.StateZero) != 0 {
				m.t.Fatalf("BlockStatus(off %d): unknown flags %#x", pos, e.Flags)
			}
			if e.Flags&blockdev.StateZero != 0 {
				m.checkZero(pos, e.Length)
			}
			pos += e.Length
		}
	}
}

// checkZero verifies that a range reported as zero reads as zeros, on
// the device and in the shadow.
func (m *model) checkZero(off, n int64) {
	m.t.Helper()
	for pos := off; pos < off+n; pos += m.chunk() {
		l := min(m.chunk(), off+n-pos)
		got := m.read(pos, l)
		for i, b := range got {
			if b != 0 || m.shadow[pos+int64(i)] != 0 {
				m.t.Fatalf("BlockStatus says [%d, +%d) reads as zero, but byte %d is %#02x (written %#02x)",
					off, n, pos+int64(i), b, m.shadow[pos+int64(i)])
			}
		}
	}
}
