package sparse

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/vmdk"
)

// A crash at each step of a descriptor rewrite leaves the old or the new
// descriptor, never an unreadable one, when either text fits in one
// sector: short to short, short to long, long to short.
func TestRewriteDescriptorCrash(t *testing.T) {
	long := strings.Repeat("x", 300) // pushes the text past 512 bytes
	steps := []string{FailpointDescBeforeFirstSync, FailpointDescBeforeSecondWrite, FailpointDescBeforeSecondSync}
	cases := []struct {
		name     string
		old, new string // snapshot names
	}{
		{"ShortToShort", "a", "b"},
		{"ShortToLong", "a", long},
		{"LongToShort", long, "b"},
	}
	for _, c := range cases {
		for i, step := range steps {
			t.Run(c.name+"/"+step, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "d.vmdk")
				opts := CreateOptions{DDB: vmdk.DDB{{Key: DDBSnapshotName, Value: c.old}}}
				if err := Create(path, 1<<20, ParentRef{FileNameHint: "p.vmdk", CID: 7}, opts); err != nil {
					t.Fatal(err)
				}
				e := openExtent(t, path, false)
				boom := errors.New("crash")
				e.Failpoint = func(name string) error {
					if name == step {
						return boom
					}
					return nil
				}
				if err := e.UpdateDescriptorDDB(DDBSnapshotName, c.new); !errors.Is(err, boom) {
					t.Fatalf("UpdateDescriptorDDB = %v, want the failpoint's error", err)
				}
				e.Close()
				// The first part alone is what a crash after its write
				// leaves; both parts after the second write.
				want := c.old
				if i == 2 || len(c.new) < len(long) {
					want = c.new
				}
				e = openExtent(t, path, true)
				defer e.Close()
				if got, _ := e.Descriptor().DDB.Get(DDBSnapshotName); got != want {
					t.Fatalf("snapshot name after the crash = %.20q, want %.20q", got, want)
				}
				if got := e.Parent(); got != (ParentRef{FileNameHint: "p.vmdk", CID: 7}) {
					t.Fatalf("parent after the crash = %+v", got)
				}
			})
		}
	}
}

func TestRewriteDescriptorErrors(t *testing.T) {
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{FileNameHint: "p.vmdk", CID: 7})
	before := readFile(t, path)
	e := openExtent(t, path, false)
	tests := []struct {
		name string
		fn   func() error
		want error
	}{
		{"TooLarge", func() error { return e.SetParent(ParentRef{FileNameHint: strings.Repeat("p", 10000)}) }, ErrDescriptorTooLarge},
		{"NotDDB", func() error { return e.UpdateDescriptorDDB("snapshot", "x") }, vmdk.ErrInvalid},
		{"Quote", func() error { return e.UpdateDescriptorDDB(DDBSnapshotName, `a"b`) }, vmdk.ErrInvalid},
		{"CreateType", func() error {
			return e.RewriteDescriptor(func(d *vmdk.Descriptor) error { d.CreateType = "monolithicFlat"; return nil })
		}, ErrBadDescriptor},
		{"Extent", func() error {
			return e.RewriteDescriptor(func(d *vmdk.Descriptor) error { d.Extents[0].Sectors *= 2; return nil })
		}, ErrBadDescriptor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	e.Close()
	if !bytes.Equal(readFile(t, path), before) {
		t.Fatalf("a refused rewrite changed the file")
	}
	ro := openExtent(t, path, true)
	defer ro.Close()
	if err := ro.SetCID(1); !errors.Is(err, blockdev.ErrReadOnly) {
		t.Fatalf("SetCID on a read-only extent = %v", err)
	}
}

// SetParent to no parent drops the hint and writes parentCID ffffffff;
// SetCID changes the CID. qemu-img agrees.
func TestRewriteDescriptorNoParent(t *testing.T) {
	path := newDelta(t, t.TempDir(), "d.vmdk", 1<<20, ParentRef{FileNameHint: "p.vmdk", CID: 7})
	e := openExtent(t, path, false)
	if err := e.SetParent(ParentRef{}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetCID(0xabcdef01); err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = openExtent(t, path, true)
	defer e.Close()
	d := e.Descriptor()
	if d.ParentFileNameHint != "" || d.ParentCID != vmdk.NoParentCID || d.CID != 0xabcdef01 {
		t.Fatalf("descriptor after SetParent(none), SetCID: %+v", d)
	}
	out := run(t, "qemu-img", "info", path)
	if bytes.Contains(out, []byte("backing file")) || !bytes.Contains(out, []byte("cid: 2882400001")) {
		t.Fatalf("qemu-img info:\n%s", out)
	}
}
