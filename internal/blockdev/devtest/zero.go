package devtest

import (
	"errors"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

func testWriteZeroes(t *testing.T, s *suite) {
	m := s.device(t)
	m.fill()
	flagSets := []blockdev.WriteFlags{0, blockdev.NoHole, m.fua(), blockdev.NoHole | m.fua()}
	for i, sp := range m.spans() {
		flags := flagSets[i%len(flagSets)]
		m.zero(sp.Off, sp.Len, flags)
		m.checkAll()
		m.write(sp.Off, m.random(sp.Len), 0) // refill for the next span
	}
	// The whole device, then data again on top of the zeros.
	m.zero(0, m.size, 0)
	m.checkAll()
	m.write(4096, m.random(8192), 0)
	m.zero(0, m.size, blockdev.NoHole)
	m.checkAll()
}

// zero calls WriteZeroes and updates the shadow.
func (m *model) zero(off, n int64, flags blockdev.WriteFlags) {
	m.t.Helper()
	if err := m.dev.WriteZeroes(m.t.Context(), off, n, flags); err != nil {
		m.t.Fatalf("WriteZeroes(off %d, len %d, flags %v): %v", off, n, flags, err)
	}
	clear(m.shadow[off : off+n])
}

func testTrim(t *testing.T, s *suite) {
	m := s.device(t)
	m.fill()
	for i, sp := range append(m.spans(), blockdev.Range{Off: 0, Len: m.size}) {
		var flags blockdev.WriteFlags
		if i%2 == 1 {
			flags = m.fua()
		}
		if err := m.dev.Trim(t.Context(), sp.Off, sp.Len, flags); err != nil {
			t.Fatalf("Trim(off %d, len %d, flags %v): %v", sp.Off, sp.Len, flags, err)
		}
		// Inside: every byte as before or zero. Outside: exactly as before.
		for pos := sp.Off; pos < sp.Off+sp.Len; pos += m.chunk() {
			l := min(m.chunk(), sp.Off+sp.Len-pos)
			got := m.read(pos, l)
			for j, b := range got {
				if want := m.shadow[pos+int64(j)]; b != want && b != 0 {
					t.Fatalf("after Trim [%d, +%d): byte %d = %#02x, want %#02x or 0", sp.Off, sp.Len, pos+int64(j), b, want)
				}
			}
			copy(m.shadow[pos:], got)
		}
		m.checkAll()
		m.write(sp.Off, m.random(sp.Len), 0)
	}
}

func testFastZero(t *testing.T, s *suite) {
	m := s.device(t)
	if !m.caps.FastZero {
		t.Logf("device does not advertise FastZero: the flag is never sent")
		return
	}
	m.fill()
	for i, sp := range m.spans() {
		flags := blockdev.FastZero
		if i%2 == 1 {
			flags |= blockdev.NoHole
		}
		err := m.dev.WriteZeroes(t.Context(), sp.Off, sp.Len, flags)
		switch {
		case err == nil:
			clear(m.shadow[sp.Off : sp.Off+sp.Len])
		case errors.Is(err, blockdev.ErrNotFast):
			// Nothing may have been written: checkAll sees the old data.
		default:
			t.Fatalf("WriteZeroes(off %d, len %d, FastZero) = %v, want nil or ErrNotFast", sp.Off, sp.Len, err)
		}
		m.checkAll()
	}
}
