package cbt

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// events is an ordered log shared by a recording store and a recording
// device, so tests can check what became durable before what was written.
type events struct {
	mu  sync.Mutex // guards log
	log []string
}

func (e *events) add(format string, a ...any) {
	e.mu.Lock()
	e.log = append(e.log, fmt.Sprintf(format, a...))
	e.mu.Unlock()
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.log...)
}

// memStore is a store in memory. Every call is durable on return, like
// the file store; snapshot returns what a crash at that instant leaves.
type memStore struct {
	mu   sync.Mutex // guards bm, al and fail
	bm   []byte
	al   []byte
	fail error // returned by every write while set

	ev *events // optional
}

func (m *memStore) load() ([]byte, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return clone(m.bm), clone(m.al), nil
}

func (m *memStore) writeBitmaps(img []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.bm = clone(img)
	m.event("bitmaps")
	return nil
}

func (m *memStore) writePages(pages []pageWrite) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, p := range pages {
		end := (p.index + 1) * pageSize
		if int64(len(m.bm)) < end {
			m.bm = append(m.bm, make([]byte, end-int64(len(m.bm)))...)
		}
		copy(m.bm[p.index*pageSize:], p.data)
	}
	m.event("pages %d", len(pages))
	return nil
}

func (m *memStore) writeAL(slot int, rec []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if len(m.al) < 2*pageSize {
		m.al = append(m.al, make([]byte, 2*pageSize-len(m.al))...)
	}
	copy(m.al[slot*pageSize:], rec)
	r, err := DecodeRecord(rec)
	if err != nil {
		panic(err) // the state wrote a record it cannot read back
	}
	m.event("al %v", r.Extents)
	return nil
}

func (m *memStore) remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bm, m.al = nil, nil
	return nil
}

func (m *memStore) moveAside(string) error { return m.remove() }
func (m *memStore) close() error           { return nil }

func (m *memStore) event(format string, a ...any) {
	if m.ev != nil {
		m.ev.add(format, a...)
	}
}

// snapshot is a copy of what is on "disk" now.
func (m *memStore) snapshot() *memStore {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &memStore{bm: clone(m.bm), al: clone(m.al)}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// testOpts are small options: 1 MiB extents, a few AL slots, so that
// tests exercise eviction with little data.
func testOpts(size int64, slots int) Options {
	return Options{Dir: "unused", Volume: "vol", Size: size, ExtentSize: 1 << 20, ALSlots: slots}
}

// openMem loads a state from a store (as Open does from files).
func openMem(t *testing.T, st store, opts Options) *State {
	t.Helper()
	s := newState(opts, st)
	if err := s.load(); err != nil {
		t.Fatalf("load: %v", err)
	}
	return s
}

// enable adds bitmaps, failing the test on error.
func enable(t *testing.T, s *State, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := s.Enable(n, time.Unix(1700000000, 0)); err != nil {
			t.Fatalf("Enable(%s): %v", n, err)
		}
	}
}

// abandon drops the state without a clean stop: a crash.
func (s *State) abandon() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.ioMu.Lock()
	s.st.close()
	s.ioMu.Unlock()
}

// dirtyBlocks returns the dirty blocks of bitmap name as a set.
func dirtyBlocks(t *testing.T, s *State, name string) map[int64]bool {
	t.Helper()
	ext, err := s.Extents(name, 0, s.size)
	if err != nil {
		t.Fatalf("Extents(%s): %v", name, err)
	}
	out := map[int64]bool{}
	var pos int64
	for _, e := range ext {
		if e.Flags == StateDirty {
			for b := pos / Granularity; b <= (pos+e.Length-1)/Granularity; b++ {
				out[b] = true
			}
		}
		pos += e.Length
	}
	if pos != s.size {
		t.Fatalf("Extents(%s) covers %d of %d bytes (more than %d extents?)", name, pos, s.size, maxExtents)
	}
	return out
}

// blocksOf is the set of blocks a byte range touches.
func blocksOf(off, n int64) []int64 {
	var out []int64
	for b := off / Granularity; b <= (off+n-1)/Granularity; b++ {
		out = append(out, b)
	}
	return out
}

// recDev is a memdev that logs every write it receives into ev, and can
// call a hook when a write arrives.
type recDev struct {
	*memdev.Device // test double: only the logged methods matter
	ev             *events
	onWrite        func(off, n int64)
}

func (d *recDev) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	d.ev.add("write %d", off)
	if d.onWrite != nil {
		d.onWrite(off, int64(len(p)))
	}
	return d.Device.WriteAt(ctx, p, off, f)
}

func (d *recDev) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	d.ev.add("zero %d", off)
	if d.onWrite != nil {
		d.onWrite(off, n)
	}
	return d.Device.WriteZeroes(ctx, off, n, f)
}
