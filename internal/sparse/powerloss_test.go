package sparse

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// disk models stable storage under an Extent: writes go to the real file
// (so the Extent reads them back) and to a pending list; fdatasync makes
// the pending writes durable. A power loss keeps the durable image plus
// any subset of the pending writes, each whole, except metadata writes
// (before the first grain), which may land sector by sector.
type disk struct {
	mu       sync.Mutex // guards durable and pending
	durable  []byte
	pending  []diskWrite
	overhead int64
}

type diskWrite struct {
	off  int64
	data []byte
}

// attachDisk hooks e's syscalls; the file on disk is the durable start.
func attachDisk(t *testing.T, e *Extent) *disk {
	d := &disk{durable: readFile(t, e.path), overhead: int64(e.hdr.Overhead) * sectorSize}
	e.file.sys.pwrite = func(fd int, p []byte, off int64) (int, error) {
		n, err := unix.Pwrite(fd, p, off)
		if n > 0 {
			d.mu.Lock()
			for _, w := range d.split(p[:n], off) {
				d.pending = append(d.pending, w)
			}
			d.mu.Unlock()
		}
		return n, err
	}
	// The model is the disk: a real fdatasync would only cost time.
	e.file.sys.fdatasync = func(int) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, w := range d.pending {
			d.durable = apply(d.durable, w)
		}
		d.pending = nil
		return nil
	}
	return d
}

// split cuts a metadata write into sectors.
func (d *disk) split(p []byte, off int64) []diskWrite {
	if off >= d.overhead {
		return []diskWrite{{off, bytes.Clone(p)}}
	}
	var out []diskWrite
	for len(p) > 0 {
		n := min(len(p), sectorSize)
		out = append(out, diskWrite{off, bytes.Clone(p[:n])})
		p, off = p[n:], off+int64(n)
	}
	return out
}

func apply(img []byte, w diskWrite) []byte {
	if end := w.off + int64(len(w.data)); end > int64(len(img)) {
		img = append(img, make([]byte, end-int64(len(img)))...)
	}
	copy(img[w.off:], w.data)
	return img
}

// powerLoss returns what the disk may hold after a power loss now.
func (d *disk) powerLoss(rng *rand.Rand) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	img := bytes.Clone(d.durable)
	for _, w := range d.pending {
		if rng.IntN(2) == 0 {
			img = apply(img, w)
		}
	}
	return img
}

// model is what each byte of the virtual disk may read after a power
// loss: its value at the last successful Flush, or any value written to it
// since.
type model struct {
	grainSize int64
	current   []byte        // the disk as written so far
	durable   []byte        // current at the last successful Flush
	since     [][]diskWrite // per grain: writes (grain-relative) since that Flush
}

func newModel(base []byte, grainSize, grains int64) *model {
	return &model{grainSize: grainSize, current: bytes.Clone(base), durable: bytes.Clone(base), since: make([][]diskWrite, grains)}
}

func (m *model) write(g int64, off int, p []byte) {
	m.since[g] = append(m.since[g], diskWrite{int64(off), bytes.Clone(p)})
	copy(m.current[g*m.grainSize+int64(off):], p)
}

func (m *model) flushed() {
	copy(m.durable, m.current)
	clear(m.since)
}

// check fails unless every byte of got may be there.
func (m *model) check(got []byte) error {
	grainSize := m.grainSize
	for start := int64(0); start < int64(len(got)); start += grainSize {
		end := min(start+grainSize, int64(len(got)))
		if bytes.Equal(got[start:end], m.durable[start:end]) {
			continue
		}
		g := start / grainSize
		for i := start; i < end; i++ {
			if got[i] != m.durable[i] && !m.writtenSince(g, i-start, got[i]) {
				return fmt.Errorf("byte %d (grain %d) reads %#02x: neither flushed (%#02x) nor written since", i, g, got[i], m.durable[i])
			}
		}
	}
	return nil
}

// writtenSince reports whether v was written at off of grain g since the
// last Flush.
func (m *model) writtenSince(g, off int64, v byte) bool {
	for _, w := range m.since[g] {
		if off >= w.off && off < w.off+int64(len(w.data)) && w.data[off-w.off] == v {
			return true
		}
	}
	return false
}

// Random writes, zeroings and flushes, some flushes stopped at a
// failpoint, then a power loss that keeps a random subset of the writes not
// yet synced. The image must open, qemu-img check must find it clean,
// qemu-img must read what we read, and every byte must read its flushed
// value or a value written after that flush: never a grain table entry
// pointing to data that did not reach the disk.
func TestPowerLoss(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			testPowerLoss(t, seed)
		})
	}
}

func testPowerLoss(t *testing.T, seed uint64) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 77))
	dir := t.TempDir()
	base := pattern(seed+1000, odd)
	_, cid := newBase(t, dir, "base", base)
	path := newDelta(t, dir, "delta.vmdk", odd, ParentRef{FileNameHint: "base.vmdk", CID: cid})
	e := openExtent(t, path, false)
	defer e.Close()
	d := attachDisk(t, e)
	gs := e.GrainSize()
	m := newModel(base, gs, e.Grains())
	stop := errors.New("power loss")
	// The power fails at one failpoint of the last Flush, or after it
	// with writes pending; earlier flushes succeed or fail at a failpoint
	// and go on (their work stays dirty).
	points := []string{"", FailpointBeforeDataSync, FailpointBeforeGTWrite, FailpointBeforeGTSync}
	crashAt := points[seed%uint64(len(points))]
	const ops, flushes = 40, 6
	for op := range ops {
		g := rng.Int64N(e.Grains())
		n := int(e.GrainLen(g))
		switch kind := e.Lookup(g).Kind; {
		case rng.IntN(8) == 0:
			if err := e.SetZero(ctx, g); err != nil {
				t.Fatal(err)
			}
			m.write(g, 0, make([]byte, n))
		case kind == Data:
			off := rng.IntN(n)
			p := pattern(seed<<8+uint64(op), 1+rng.IntN(n-off))
			if err := e.WriteGrain(ctx, g, off, p); err != nil {
				t.Fatal(err)
			}
			m.write(g, off, p)
		default:
			p := pattern(seed<<8+uint64(op), n)
			if err := e.AllocateGrain(ctx, g, p); err != nil {
				t.Fatal(err)
			}
			m.write(g, 0, p)
		}
		if op%(ops/flushes) != ops/flushes-1 {
			continue
		}
		last := op+ops/flushes >= ops
		fp := points[rng.IntN(len(points))]
		if last {
			fp = crashAt
		}
		e.Failpoint = func(name string) error {
			if name == fp {
				return stop
			}
			return nil
		}
		err := e.Flush(ctx)
		switch {
		case err == nil && fp == "":
			m.flushed()
		case !errors.Is(err, stop):
			t.Fatalf("Flush with failpoint %q: %v", fp, err)
		}
		if last {
			break
		}
	}
	// The image sits next to the base, which its hint names.
	img := filepath.Join(dir, "after-power-loss.vmdk")
	if err := os.WriteFile(img, d.powerLoss(rng), 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := Open(img, true)
	if err != nil {
		t.Fatalf("Open after the power loss: %v", err)
	}
	defer after.Close()
	if got := view(t, e, base); !bytes.Equal(got, m.current) {
		t.Fatalf("the extent before the power loss: %s", firstDiff(got, m.current))
	}
	got := view(t, after, base)
	if err := m.check(got); err != nil {
		t.Fatal(err)
	}
	run(t, "qemu-img", "check", "-q", img)
	if q := qemuRaw(t, img); !bytes.Equal(q, got) {
		t.Fatalf("qemu-img reads the image differently: %s", firstDiff(q, got))
	}
}
