package sparse

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goodImage returns the bytes of a 1 MiB delta with grains 0 and 2
// allocated and grain 3 zeroed, flushed.
func goodImage(t *testing.T) []byte {
	t.Helper()
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{FileNameHint: "base.vmdk", CID: 1})
	e := openExtent(t, path, false)
	ctx := t.Context()
	for _, g := range []int64{0, 2} {
		if err := e.AllocateGrain(ctx, g, pattern(uint64(g), int(e.GrainSize()))); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.SetZero(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e.Close()
	return readFile(t, path)
}

// Layout of goodImage (newHeader for 1 MiB): descriptor at sectors 1-20,
// redundant directory at 21 -> table at 22, directory at 26 -> table at
// 27, overhead 128, grains 0 and 2 at sectors 128 and 256.
const (
	offRGD = 21 * sectorSize
	offGD  = 26 * sectorSize
	offGT  = 27 * sectorSize
)

func put32(off int, v uint32) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
}

func put64(off int, v uint64) func([]byte) []byte {
	return func(b []byte) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
}

func truncate(n int) func([]byte) []byte { return func(b []byte) []byte { return b[:n] } }

func descriptorText(text string) func([]byte) []byte {
	return func(b []byte) []byte {
		area := b[sectorSize : 21*sectorSize]
		clear(area)
		copy(area, text)
		return b
	}
}

// Every damaged header, directory, table or descriptor is refused with a
// named error, and Open never panics.
func TestOpenCorrupt(t *testing.T) {
	good := goodImage(t)
	desc := string(good[sectorSize : sectorSize+strings.IndexByte(string(good[sectorSize:]), 0)])
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"Magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrNotSparse},
		{"Version0", put32(4, 0), ErrCorrupt},
		{"Version4", put32(4, 4), ErrUnsupported},
		{"Compressed", put32(8, createFlags|flagCompressed), ErrUnsupported},
		{"CompressionMethod", func(b []byte) []byte { b[77] = 1; return b }, ErrUnsupported},
		{"TextModeTransfer", func(b []byte) []byte { b[75] = '\n'; return b }, ErrCorrupt},
		{"GrainNotPowerOf2", put64(20, 100), ErrCorrupt},
		{"GrainTooSmall", put64(20, 4), ErrCorrupt},
		{"GrainHuge", put64(20, 1<<40), ErrCorrupt},
		{"GTEs256", put32(44, 256), ErrCorrupt},
		{"CapacityZero", put64(12, 0), ErrCorrupt},
		{"CapacityHuge", put64(12, 1<<40), ErrCorrupt},
		{"CapacityBeyondDirectory", put64(12, 1<<32), ErrCorrupt},
		{"CapacityNotDescriptor", put64(12, 4096), ErrCorrupt},
		{"NoDescriptor", put64(28, 0), ErrUnsupported},
		{"DescriptorEmpty", put64(36, 0), ErrCorrupt},
		{"DescriptorOutside", put64(28, 1<<50), ErrCorrupt},
		{"DirectoryOutside", put64(56, 1<<20), ErrCorrupt},
		{"DirectoryOverflow", put64(56, ^uint64(0)-1), ErrCorrupt},
		{"DirectoryAtEnd", put64(56, ^uint64(0)), ErrUnsupported},
		{"RedundantOutside", put64(48, 1<<20), ErrCorrupt},
		{"OverheadPastFile", put64(64, 1<<20), ErrCorrupt},
		{"OverheadTooSmall", put64(64, 20), ErrCorrupt},
		{"TableOutside", put32(offGD, 0xffff0000), ErrCorrupt},
		{"TableOverDescriptor", put32(offGD, 1), ErrCorrupt},
		{"TableIsRedundantTable", put32(offGD, 22), ErrCorrupt},
		{"TableOnlyRedundant", put32(offGD, 0), ErrCorrupt},
		{"RedundantMissing", put32(offRGD, 0), ErrCorrupt},
		{"GrainInMetadata", put32(offGT, 5), ErrCorrupt},
		{"GrainPastEOF", put32(offGT, 1<<20), ErrCorrupt},
		{"GrainCrossesEOF", put32(offGT, uint32(len(good)/sectorSize-1)), ErrCorrupt},
		{"DescriptorBinary", descriptorText("\x01\x02binary"), ErrCorrupt},
		{"DescriptorWiped", descriptorText(""), ErrCorrupt},
		{"DescriptorStreamOptimized", descriptorText(strings.Replace(desc, "monolithicSparse", "streamOptimized", 1)), ErrUnsupported},
		{"DescriptorTwoExtents", descriptorText(strings.Replace(desc, "RW 2048 SPARSE \"d.vmdk\"", "RW 1024 SPARSE \"d.vmdk\"\nRW 1024 SPARSE \"e.vmdk\"", 1)), ErrCorrupt},
		{"DescriptorFlatExtent", descriptorText(strings.Replace(desc, "SPARSE \"d.vmdk\"", "FLAT \"d.vmdk\" 0", 1)), ErrCorrupt},
		{"Empty", truncate(0), ErrNotSparse},
		{"HalfMagic", truncate(3), ErrNotSparse},
		{"TruncatedHeader", truncate(100), ErrCorrupt},
		{"TruncatedDescriptor", truncate(1000), ErrCorrupt},
		{"TruncatedTables", truncate(offGT + 100), ErrCorrupt},
		{"TruncatedLastGrain", truncate(len(good) - 512), ErrCorrupt},
		{"RawZeros", func(b []byte) []byte { return make([]byte, len(b)) }, ErrNotSparse},
		{"TextDescriptor", func([]byte) []byte { return []byte(desc) }, ErrNotSparse},
	}
	if !strings.Contains(desc, `RW 2048 SPARSE "d.vmdk"`) {
		t.Fatalf("unexpected descriptor:\n%s", desc)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.vmdk")
			if err := os.WriteFile(path, tt.mutate(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{true, false} {
				e, err := Open(path, ro)
				if err == nil {
					e.Close()
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("Open(readOnly=%v) = %v, want %v", ro, err, tt.want)
				}
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q does not name the file", err)
				}
			}
		})
	}
	// The unmodified image opens: the cases above test one fault each.
	path := filepath.Join(t.TempDir(), "d.vmdk")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	openExtent(t, path, false).Close()
}

// Version 3 (changed block tracking) and unallocated grain tables open
// read-only only.
func TestOpenReadOnlyOnly(t *testing.T) {
	good := goodImage(t)
	tests := []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"Version3", put32(4, 3)},
		{"UnallocatedTable", func(b []byte) []byte { return put32(offRGD, 0)(put32(offGD, 0)(b)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "d.vmdk")
			if err := os.WriteFile(path, tt.mutate(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, false); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Open read-write = %v, want ErrUnsupported", err)
			}
			e := openExtent(t, path, true)
			defer e.Close()
			if got := e.Lookup(1).Kind; got != Unallocated {
				t.Fatalf("grain 1 is %s", got)
			}
		})
	}
}

func TestOpenNotAFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, true); !errors.Is(err, ErrNotSparse) {
		t.Fatalf("Open(directory) = %v, want ErrNotSparse", err)
	}
	if _, err := Open(filepath.Join(dir, "missing.vmdk"), true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open(missing) = %v, want ErrNotExist", err)
	}
}
