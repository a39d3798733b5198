package sparse

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// fuzzDescBytes is where FuzzOpen puts rest: after the header and a
// 20-sector descriptor area, as Create and qemu-img lay files out.
const fuzzDescBytes = descSectors * sectorSize

// fuzzImage assembles a file from FuzzOpen's arguments: header (cut or
// zero-padded to 512 bytes), descriptor (to 20 sectors), rest; then cut or
// zero-extended to sectors*512 bytes unless sectors is 0. Splitting the
// file this way keeps inputs small (a few KiB, trailing zeros implicit),
// so the fuzzer mutates and minimizes them quickly.
func fuzzImage(header, desc, rest []byte, sectors uint16) []byte {
	img := make([]byte, headerBytes+fuzzDescBytes, headerBytes+fuzzDescBytes+len(rest))
	copy(img[:headerBytes], header)
	copy(img[headerBytes:], desc[:min(len(desc), fuzzDescBytes)])
	img = append(img, rest...)
	if sectors == 0 {
		return img
	}
	n := int(sectors) * sectorSize
	if n <= len(img) {
		return img[:n]
	}
	return append(img, make([]byte, n-len(img))...)
}

// splitImage is the inverse of fuzzImage for a seed file.
func splitImage(file []byte) (header, desc, rest []byte, sectors uint16) {
	trim := func(b []byte) []byte { return bytes.TrimRight(b, "\x00") }
	return trim(file[:headerBytes]), trim(file[headerBytes : headerBytes+fuzzDescBytes]),
		trim(file[headerBytes+fuzzDescBytes:]), uint16(len(file) / sectorSize)
}

// FuzzOpen feeds Open's header, descriptor and table parsing arbitrary
// files (see fuzzImage), held in a memfd so an exec costs no directory
// I/O. Open must never panic, must refuse with ErrNotSparse, ErrCorrupt or
// ErrUnsupported, and every extent it accepts must be consistent: grains
// inside the file and readable; opened read-write, a new grain written and
// flushed must read back after a reopen.
//
// Seeds: testdata/fuzz/FuzzOpen/qemu-delta-zeroed-1M is `qemu-img create
// -f vmdk -o subformat=monolithicSparse,zeroed_grain=on -b base.vmdk -F
// vmdk d.vmdk 1M` after `qemu-io -c 'write -z 0 4k' -c 'write -z 128k
// 64k'` (one data grain, one zeroed grain); f.Add adds a Create output.
func FuzzOpen(f *testing.F) {
	path := f.TempDir() + "/d.vmdk"
	if err := Create(path, 1<<20, ParentRef{FileNameHint: "base.vmdk", CID: 1}, CreateOptions{}); err != nil {
		f.Fatal(err)
	}
	e, err := Open(path, false)
	if err != nil {
		f.Fatal(err)
	}
	if err := e.SetZero(f.Context(), 3); err != nil {
		f.Fatal(err)
	}
	if err := e.Flush(f.Context()); err != nil {
		f.Fatal(err)
	}
	e.Close()
	h, d, r, n := splitImage(readFileF(f, path))
	f.Add(h, d, r, n)
	f.Fuzz(func(t *testing.T, header, desc, rest []byte, sectors uint16) {
		img := fuzzImage(header, desc, rest, sectors)
		fd := memfd(t, img)
		defer unix.Close(fd)
		for _, ro := range []bool{true, false} {
			e, err := loadFD(t, fd, ro)
			if err != nil {
				if !errors.Is(err, ErrNotSparse) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("load(readOnly=%v) = %v, not a named error", ro, err)
				}
				continue
			}
			checkAccepted(t, e, fd)
		}
	})
}

func readFileF(f *testing.F, path string) []byte {
	b, err := readFileErr(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// memfd returns an anonymous file holding img.
func memfd(t *testing.T, img []byte) int {
	fd, err := unix.MemfdCreate("fuzz.vmdk", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pwrite(fd, img, 0); err != nil && len(img) > 0 {
		t.Fatal(err)
	}
	return fd
}

// loadFD opens an Extent over a duplicate of fd (Close closes it).
func loadFD(t *testing.T, fd int, readOnly bool) (*Extent, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	e, err := load("fuzz.vmdk", dup, readOnly)
	if err != nil {
		unix.Close(dup)
	}
	return e, err
}

// checkAccepted checks an extent load accepted from fuzz input.
func checkAccepted(t *testing.T, e *Extent, fd int) {
	ctx := t.Context()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	if err := e.Descriptor().Validate(); err != nil {
		t.Fatalf("accepted descriptor does not validate: %v", err)
	}
	if e.Grains()*e.GrainSize() < e.Capacity() {
		t.Fatalf("%d grains of %d bytes do not cover %d bytes", e.Grains(), e.GrainSize(), e.Capacity())
	}
	// Only allocated tables: a hostile capacity may mean 2^29 grains.
	free := int64(-1)
	buf := make([]byte, e.GrainSize())
	for i, gt := range e.tables {
		if gt == nil {
			continue
		}
		for j := range int64(gtesPerGT) {
			g := int64(i)*gtesPerGT + j
			if g >= e.Grains() {
				break
			}
			s := e.Lookup(g)
			if s.Kind == Unallocated {
				if free < 0 {
					free = g
				}
				continue
			}
			if s.Kind == Data && int64(s.Sector)*sectorSize+e.GrainLen(g) > st.Size {
				t.Fatalf("grain %d at sector %d passes the end of the %d-byte file", g, s.Sector, st.Size)
			}
			if err := e.ReadGrain(ctx, g, 0, buf[:e.GrainLen(g)]); err != nil {
				t.Fatalf("ReadGrain %d: %v", g, err)
			}
		}
	}
	if e.ReadOnly() || free < 0 {
		e.Close()
		return
	}
	e.file.sys.fdatasync = func(int) error { return nil } // a memfd: nothing to sync
	p := pattern(uint64(free), int(e.GrainLen(free)))
	if err := e.AllocateGrain(ctx, free, p); errors.Is(err, ErrExtentFull) {
		e.Close()
		return
	} else if err != nil {
		t.Fatalf("AllocateGrain %d: %v", free, err)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.Close()
	again, err := loadFD(t, fd, true)
	if err != nil {
		t.Fatalf("reopen after writing grain %d: %v", free, err)
	}
	defer again.Close()
	got := make([]byte, len(p))
	if err := again.ReadGrain(ctx, free, 0, got); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("grain %d after reopen: %v", free, err)
	}
}
