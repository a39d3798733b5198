package vmdk

import (
	"bytes"
	"os"
	"reflect"
	"testing"
)

// testdata/qemu-monolithicFlat-1M.vmdk is the descriptor written by
// `qemu-img create -f vmdk -o subformat=monolithicFlat x.vmdk 1M`
// (qemu-img 7.2, Debian 12).
func TestGoldenQemuMonolithicFlat(t *testing.T) {
	data, err := os.ReadFile("testdata/qemu-monolithicFlat-1M.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Descriptor{
		Version:    1,
		CID:        0x9a0ee90a,
		ParentCID:  NoParentCID,
		CreateType: CreateTypeMonolithicFlat,
		Extents:    []Extent{{Access: AccessRW, Sectors: 2048, Type: TypeFlat, File: "x-flat.vmdk", Offset: 0}},
		DDB: DDB{
			{"ddb.virtualHWVersion", "4"},
			{"ddb.geometry.cylinders", "2"},
			{"ddb.geometry.heads", "16"},
			{"ddb.geometry.sectors", "63"},
			{"ddb.adapterType", "ide"},
			{"ddb.toolsVersion", "2147483647"},
		},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Parse:\n got %+v\nwant %+v", d, want)
	}
	if got, want := d.Size(), int64(1<<20); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	// Our writer produces qemu's bytes exactly.
	if got := d.Marshal(); !bytes.Equal(got, data) {
		t.Errorf("Marshal differs from qemu-img's descriptor:\n got %q\nwant %q", got, data)
	}
}

// NewFlat's disk database matches what qemu-img writes for the same size,
// apart from the random CID and qemu's toolsVersion.
func TestNewFlatMatchesQemu(t *testing.T) {
	data, err := os.ReadFile("testdata/qemu-monolithicFlat-1M.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	q, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewFlat(1<<20, "x-flat.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	q.CID = d.CID
	q.DDB.Delete("ddb.toolsVersion")
	if !reflect.DeepEqual(d, q) {
		t.Fatalf("NewFlat:\n got %+v\nwant %+v", d, q)
	}
}
