package sparse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// Create lays the file out byte for byte as qemu-img does with
// zeroed_grain=on: same size, same header sector, same grain directories,
// and a descriptor that differs only by the CID.
func TestCreateMatchesQemu(t *testing.T) {
	for _, capacity := range []int64{1 << 20, 1<<20 + 512, 100 << 20, 33 << 30} {
		t.Run(strconv.FormatInt(capacity, 10), func(t *testing.T) {
			dir := t.TempDir()
			ours := newDelta(t, dir, "ours.vmdk", capacity, ParentRef{})
			theirs := filepath.Join(dir, "theirs.vmdk")
			run(t, "qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse,zeroed_grain=on",
				theirs, strconv.FormatInt(capacity, 10))
			a, b := readFile(t, ours), readFile(t, theirs)
			if got, want := len(a), len(b); got != want {
				t.Fatalf("file size %d, qemu-img's %d", got, want)
			}
			if got, want := a[:headerBytes], b[:headerBytes]; !bytes.Equal(got, want) {
				t.Fatalf("header differs from qemu-img's:\n got %x\nwant %x", got, want)
			}
			h := unmarshalHeader(a)
			g := geometryOf(h.Capacity, h.GrainSectors)
			for _, gd := range []uint64{h.RGDOffset, h.GDOffset} {
				span := func(x []byte) []byte { return x[gd*sectorSize : (gd+uint64(g.gdSectors))*sectorSize] }
				if !bytes.Equal(span(a), span(b)) {
					t.Fatalf("grain directory at sector %d differs from qemu-img's", gd)
				}
			}
			descA := embedded(t, a)
			descB := embedded(t, b)
			descA.CID = descB.CID
			descB.Extents[0].File = descA.Extents[0].File
			if got, want := string(descA.Marshal()), string(descB.Marshal()); got != want {
				t.Fatalf("descriptor:\n%s\nqemu-img's:\n%s", got, want)
			}
			// Everything else in the metadata is zero.
			rest := bytes.Clone(a)
			clear(rest[:headerBytes])
			clear(rest[h.DescOffset*sectorSize : (h.DescOffset+h.DescSectors)*sectorSize])
			for _, gd := range []uint64{h.RGDOffset, h.GDOffset} {
				clear(rest[gd*sectorSize : (gd+uint64(g.gdSectors))*sectorSize])
			}
			if !bytes.Equal(rest, make([]byte, len(rest))) {
				t.Fatalf("non-zero bytes outside header, descriptor and directories")
			}
			run(t, "qemu-img", "check", "-q", ours)
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// embedded parses the embedded descriptor of a sparse extent image.
func embedded(t *testing.T, file []byte) *vmdk.Descriptor {
	t.Helper()
	off := binary.LittleEndian.Uint64(file[28:]) * sectorSize
	n := binary.LittleEndian.Uint64(file[36:]) * sectorSize
	area := file[off : off+n]
	if i := bytes.IndexByte(area, 0); i >= 0 {
		area = area[:i]
	}
	d, err := vmdk.Parse(area)
	if err != nil {
		t.Fatalf("embedded descriptor: %v\n%s", err, area)
	}
	return d
}

func TestCreateOpenRoundTrip(t *testing.T) {
	dir := t.TempDir()
	const capacity = 5<<20 + 512
	parent := ParentRef{FileNameHint: "base.vmdk", CID: 0x1234abcd}
	path := filepath.Join(dir, "delta.vmdk")
	opts := CreateOptions{DDB: vmdk.DDB{{Key: DDBSnapshotName, Value: "before-upgrade"}, {Key: vmdk.DDBAdapterType, Value: "lsilogic"}}}
	if err := Create(path, capacity, parent, opts); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{true, false} {
		e := openExtent(t, path, ro)
		if got, want := e.Capacity(), int64(capacity); got != want {
			t.Errorf("Capacity = %d, want %d", got, want)
		}
		if got, want := e.GrainSize(), int64(64<<10); got != want {
			t.Errorf("GrainSize = %d, want %d", got, want)
		}
		if got, want := e.Grains(), int64(81); got != want {
			t.Errorf("Grains = %d, want %d", got, want)
		}
		if got, want := e.GrainLen(80), int64(512); got != want {
			t.Errorf("GrainLen(last) = %d, want %d", got, want)
		}
		if got, want := e.Parent(), parent; got != want {
			t.Errorf("Parent = %+v, want %+v", got, want)
		}
		d := e.Descriptor()
		if got, want := d.CID, e.CID(); got != want || got == vmdk.NoParentCID {
			t.Errorf("descriptor CID %08x, CID() %08x", got, want)
		}
		if got, _ := d.DDB.Get(DDBSnapshotName); got != "before-upgrade" {
			t.Errorf("%s = %q", DDBSnapshotName, got)
		}
		if got, _ := d.DDB.Get(vmdk.DDBAdapterType); got != "lsilogic" {
			t.Errorf("adapterType = %q", got)
		}
		if got, want := d.Extents[0], (vmdk.Extent{Access: "RW", Sectors: capacity / 512, Type: "SPARSE", File: "delta.vmdk"}); got != want {
			t.Errorf("extent %+v, want %+v", got, want)
		}
		if !e.ZeroGrains() || e.ReadOnly() != ro {
			t.Errorf("ZeroGrains %v ReadOnly %v", e.ZeroGrains(), e.ReadOnly())
		}
		for g := int64(-1); g <= e.Grains(); g++ {
			if got := e.Lookup(g); got != (GrainState{}) {
				t.Fatalf("Lookup(%d) = %+v in a new extent", g, got)
			}
		}
		// Mutating the returned descriptor changes nothing inside.
		d.DDB.Set(DDBSnapshotName, "changed")
		if got, _ := e.Descriptor().DDB.Get(DDBSnapshotName); got != "before-upgrade" {
			t.Errorf("Descriptor() is not a copy")
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.vmdk")
	if err := os.WriteFile(existing, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		path     string
		capacity int64
		parent   ParentRef
		want     error
	}{
		{"Exists", existing, 1 << 20, ParentRef{}, ErrExists},
		{"Zero", filepath.Join(dir, "a.vmdk"), 0, ParentRef{}, ErrBadCapacity},
		{"Unaligned", filepath.Join(dir, "a.vmdk"), 1<<20 + 1, ParentRef{}, ErrBadCapacity},
		{"TooLarge", filepath.Join(dir, "a.vmdk"), MaxCapacity + 512, ParentRef{}, ErrBadCapacity},
		{"QuoteInHint", filepath.Join(dir, "a.vmdk"), 1 << 20, ParentRef{FileNameHint: `x".vmdk`}, vmdk.ErrInvalid},
		{"QuoteInName", filepath.Join(dir, `a".vmdk`), 1 << 20, ParentRef{}, vmdk.ErrInvalid},
		{"NoDir", filepath.Join(dir, "missing", "a.vmdk"), 1 << 20, ParentRef{}, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Create(tt.path, tt.capacity, tt.parent, CreateOptions{})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Create = %v, want %v", err, tt.want)
			}
		})
	}
	if got := string(readFile(t, existing)); got != "keep me" {
		t.Fatalf("existing file changed to %q", got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("Create left files behind: %v", entries)
	}
}

// A crash (an error) at each step of Create leaves nothing at the path and
// no temp file; the next Create succeeds.
func TestCreateFailpoints(t *testing.T) {
	for _, fp := range []string{FailpointCreateBeforeFileSync, FailpointCreateBeforeRename, FailpointCreateBeforeDirSync} {
		t.Run(fp, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "d.vmdk")
			boom := errors.New("boom")
			err := Create(path, 1<<20, ParentRef{}, CreateOptions{Failpoint: func(name string) error {
				if name == fp {
					return boom
				}
				return nil
			}})
			if !errors.Is(err, boom) {
				t.Fatalf("Create = %v, want the failpoint's error", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("files left: %v", entries)
			}
			if err := Create(path, 1<<20, ParentRef{}, CreateOptions{}); err != nil {
				t.Fatalf("Create after the failure: %v", err)
			}
			openExtent(t, path, true).Close()
		})
	}
}
