package flat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

const goodDesc = `# Disk DescriptorFile
version=1
CID=12345678
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
EXTENTS

# The Disk Data Base
#DDB

ddb.adapterType = "ide"
DDB
`

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name    string
		extents string
		ddb     string
		flat    func(path string) error // makes the flat file
		want    error
	}{
		{"TwoExtents", "RW 2048 FLAT \"v-flat.vmdk\" 0\nRW 2048 FLAT \"v-flat.vmdk\" 2048", "", sizedFile(4 << 20), ErrNotFlat},
		{"Offset", "RW 2048 FLAT \"v-flat.vmdk\" 1", "", sizedFile(2 << 20), ErrNotFlat},
		{"Sparse", "RW 2048 SPARSE \"v-flat.vmdk\"", "", sizedFile(2 << 20), ErrNotFlat},
		{"Zero", "RW 2048 ZERO", "", sizedFile(2 << 20), ErrNotFlat},
		{"NoAccess", "NOACCESS 2048 FLAT \"v-flat.vmdk\" 0", "", sizedFile(2 << 20), ErrNotFlat},
		{"MissingFlat", "RW 2048 FLAT \"v-flat.vmdk\" 0", "", nil, os.ErrNotExist},
		{"ShortFlat", "RW 2048 FLAT \"v-flat.vmdk\" 0", "", sizedFile(1<<20 - 512), ErrShortFlat},
		{"FlatIsDir", "RW 2048 FLAT \"v-flat.vmdk\" 0", "", func(p string) error { return os.Mkdir(p, 0o755) }, ErrNotRegular},
		{"BadReadOnlyValue", "RW 2048 FLAT \"v-flat.vmdk\" 0", `ddb.extrasphere.readOnly = "yes"`, sizedFile(2 << 20), ErrBadOption},
		{"BadPreallocValue", "RW 2048 FLAT \"v-flat.vmdk\" 0", `ddb.extrasphere.preallocated = "1"`, sizedFile(2 << 20), ErrBadOption},
		{"Garbage", "this is not an extent", "", sizedFile(2 << 20), vmdk.ErrNotDescriptor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			desc := filepath.Join(dir, "v.vmdk")
			text := strings.NewReplacer("EXTENTS", tt.extents, "DDB\n", tt.ddb+"\n").Replace(goodDesc)
			if err := os.WriteFile(desc, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.flat != nil {
				if err := tt.flat(filepath.Join(dir, "v-flat.vmdk")); err != nil {
					t.Fatal(err)
				}
			}
			d, err := Open(desc, Options{})
			if !errors.Is(err, tt.want) {
				if d != nil {
					d.Close()
				}
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none.vmdk"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing descriptor = %v, want os.ErrNotExist", err)
	}
}

func sizedFile(n int64) func(string) error {
	return func(p string) error {
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Truncate(n)
	}
}

// Read-only comes from the option, the descriptor key, or an RDONLY
// extent; a read-only device refuses writes and the file is unchanged.
func TestOpenReadOnlySources(t *testing.T) {
	tests := []struct {
		name    string
		extents string
		ddb     string
		opts    Options
	}{
		{"Option", `RW 2048 FLAT "v-flat.vmdk" 0`, "", Options{ReadOnly: true}},
		{"DescriptorKey", `RW 2048 FLAT "v-flat.vmdk" 0`, `ddb.extrasphere.readOnly = "TRUE"`, Options{}},
		{"RdonlyExtent", `RDONLY 2048 FLAT "v-flat.vmdk" 0`, "", Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			desc := filepath.Join(dir, "v.vmdk")
			text := strings.NewReplacer("EXTENTS", tt.extents, "DDB\n", tt.ddb+"\n").Replace(goodDesc)
			if err := os.WriteFile(desc, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			flat := filepath.Join(dir, "v-flat.vmdk")
			if err := sizedFile(2 << 20)(flat); err != nil {
				t.Fatal(err)
			}
			d := openVolume(t, desc, tt.opts)
			defer d.Close()
			if !d.Caps().ReadOnly {
				t.Fatalf("Caps().ReadOnly = false")
			}
			if err := d.WriteAt(t.Context(), []byte("x"), 0, 0); !errors.Is(err, blockdev.ErrReadOnly) {
				t.Fatalf("WriteAt = %v, want ErrReadOnly", err)
			}
			if got := allocated(t, flat); got != 0 {
				t.Fatalf("flat file got %d bytes allocated", got)
			}
		})
	}
}

// A monolithicFlat made by qemu-img opens, and its size is right.
func TestOpenQemuCreated(t *testing.T) {
	dir := t.TempDir()
	desc := filepath.Join(dir, "q.vmdk")
	qemuImg(t, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", desc, "3M")
	d := openVolume(t, desc, Options{})
	defer d.Close()
	if got, want := d.Size(), int64(3<<20); got != want {
		t.Fatalf("Size = %d, want %d", got, want)
	}
	if got, want := d.Path(), filepath.Join(dir, "q-flat.vmdk"); got != want {
		t.Fatalf("Path = %s, want %s", got, want)
	}
}
