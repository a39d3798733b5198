package devtest

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// model pairs a device with an in-memory copy of what it must hold.
type model struct {
	t      *testing.T
	dev    blockdev.Device
	caps   blockdev.Caps
	size   int64
	mb     int64 // MinBlock
	shadow []byte
	rng    *rand.Rand
}

func newModel(t *testing.T, dev blockdev.Device) *model {
	caps := dev.Caps()
	mb := int64(caps.MinBlock)
	if mb < 1 {
		mb = 1
	}
	return &model{
		t: t, dev: dev, caps: caps, size: dev.Size(), mb: mb,
		shadow: make([]byte, dev.Size()),
		rng:    rand.New(rand.NewPCG(uint64(dev.Size()), 0x5eed)),
	}
}

// fua returns FUA when the device honours it, else 0 (FUA is only sent
// to devices that advertise it, like an NBD client does).
func (m *model) fua() blockdev.WriteFlags {
	if m.caps.FUA {
		return blockdev.FUA
	}
	return 0
}

func (m *model) random(n int64) []byte { return randomBytes(m.rng, n) }

// randomBytes returns n random bytes, none of them zero (so a range that
// was zeroed by mistake always shows).
func randomBytes(rng *rand.Rand, n int64) []byte {
	p := make([]byte, n)
	for i := 0; i < len(p); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64()|0x0101010101010101)
		copy(p[i:], w[:])
	}
	return p
}

// chunk is the largest single read or write the suite makes.
func (m *model) chunk() int64 {
	c := int64(1 << 20)
	if mp := int64(m.caps.MaxPayload); mp > 0 && mp < c {
		c = mp / m.mb * m.mb
	}
	return c
}

// write writes p at off, in requests of at most chunk bytes, and checks
// that the device left p alone.
func (m *model) write(off int64, p []byte, flags blockdev.WriteFlags) {
	m.t.Helper()
	keep := slices.Clone(p)
	for done := int64(0); done < int64(len(p)); done += m.chunk() {
		q := p[done:min(done+m.chunk(), int64(len(p)))]
		if err := m.dev.WriteAt(m.t.Context(), q, off+done, flags); err != nil {
			m.t.Fatalf("WriteAt(off %d, len %d, flags %v): %v", off+done, len(q), flags, err)
		}
	}
	if !bytes.Equal(p, keep) {
		m.t.Fatalf("WriteAt(off %d, len %d) modified the caller's buffer", off, len(p))
	}
	copy(m.shadow[off:], p)
}

// fill writes random data over the whole device.
func (m *model) fill() {
	m.t.Helper()
	for off := int64(0); off < m.size; off += m.chunk() {
		m.write(off, m.random(min(m.chunk(), m.size-off)), 0)
	}
}

// read returns the device's bytes at [off, off+n); the buffer starts
// dirty so a short read shows.
func (m *model) read(off, n int64) []byte {
	m.t.Helper()
	p := bytes.Repeat([]byte{0xa5}, int(n))
	if err := m.dev.ReadAt(m.t.Context(), p, off); err != nil {
		m.t.Fatalf("ReadAt(off %d, len %d): %v", off, n, err)
	}
	return p
}

// check compares [off, off+n) with the shadow.
func (m *model) check(off, n int64) {
	m.t.Helper()
	for pos := off; pos < off+n; pos += m.chunk() {
		l := min(m.chunk(), off+n-pos)
		got := m.read(pos, l)
		if i := firstDiff(got, m.shadow[pos:pos+l]); i >= 0 {
			m.t.Fatalf("byte %d: got %#02x, want %#02x (reading [%d, +%d))", pos+int64(i), got[i], m.shadow[pos+int64(i)], pos, l)
		}
	}
}

// checkAll compares the whole device with the shadow.
func (m *model) checkAll() {
	m.t.Helper()
	m.check(0, m.size)
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// spans are the interesting ranges of a device: aligned and unaligned,
// crossing 4 KiB blocks, at the start and at the last byte. Those that
// break MinBlock or the size are dropped.
func (m *model) spans() []blockdev.Range {
	s := m.size
	all := []blockdev.Range{
		{Off: 0, Len: 4096}, {Off: 4096, Len: 8192}, {Off: 512, Len: 512}, {Off: 0, Len: 512}, {Off: s - 4096, Len: 4096}, {Off: s - 512, Len: 512},
		{Off: 1 << 16, Len: 1 << 17}, {Off: 0, Len: 1 << 20},
		{Off: 1, Len: 1}, {Off: 4095, Len: 2}, {Off: 100, Len: 10000}, {Off: 511, Len: 1025}, {Off: 8191, Len: 4097}, {Off: s - 1, Len: 1}, {Off: s - 4097, Len: 4097}, {Off: s - 3000, Len: 3000},
	}
	var out []blockdev.Range
	for _, sp := range all {
		if sp.Off >= 0 && sp.Len > 0 && sp.Off+sp.Len <= s && sp.Off%m.mb == 0 && sp.Len%m.mb == 0 && sp.Len <= m.chunk() {
			out = append(out, sp)
		}
	}
	if len(out) < 4 {
		m.t.Fatalf("device size %d with MinBlock %d leaves only %d test spans", s, m.mb, len(out))
	}
	return out
}
