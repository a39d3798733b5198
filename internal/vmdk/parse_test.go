package vmdk

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const vmwareDelta = `# Disk DescriptorFile
version=1
encoding="UTF-8"
CID=fffffffe
parentCID=1234abcd
isNativeSnapshot="no"
createType="monolithicSparse"
parentFileNameHint="../base dir/base.vmdk"

# Extent description
RW 20480 SPARSE "delta.vmdk"

# The Disk Data Base
#DDB

ddb.longContentID = "0123456789abcdef0123456789abcdef"
ddb.uuid = "60 00 C2 9a 0b 6c 2e 5b-4e 2d 3a 1f 5d 7c 8e 9f"
ddb.virtualHWVersion = "9"
`

func TestParseVMwareDelta(t *testing.T) {
	d, err := Parse([]byte(vmwareDelta))
	if err != nil {
		t.Fatal(err)
	}
	want := &Descriptor{
		Version:            1,
		CID:                0xfffffffe,
		ParentCID:          0x1234abcd,
		CreateType:         "monolithicSparse",
		ParentFileNameHint: "../base dir/base.vmdk",
		Header:             []KeyValue{{"encoding", "UTF-8"}, {"isNativeSnapshot", "no"}},
		Extents:            []Extent{{Access: AccessRW, Sectors: 20480, Type: TypeSparse, File: "delta.vmdk"}},
		DDB: DDB{
			{"ddb.longContentID", "0123456789abcdef0123456789abcdef"},
			{"ddb.uuid", "60 00 C2 9a 0b 6c 2e 5b-4e 2d 3a 1f 5d 7c 8e 9f"},
			{"ddb.virtualHWVersion", "9"},
		},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got  %+v\nwant %+v", d, want)
	}
	again, err := Parse(d.Marshal())
	if err != nil {
		t.Fatalf("Parse(Marshal): %v", err)
	}
	if !reflect.DeepEqual(again, d) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", again, d)
	}
}

// Case-insensitive keys and types, CRLF line ends, tabs, unquoted values,
// zero padding, ZERO extents and several extents.
func TestParseLenient(t *testing.T) {
	text := "  # comment\r\n\r\nVERSION = 2\r\ncid=1\r\nParentCid=FFFFFFFF\r\ncreatetype = twoGbMaxExtentFlat\r\n" +
		"rw\t1024 flat \"a b-f001.vmdk\" 0\r\nRdOnly 8 Zero\r\nNOACCESS 16 FLAT \"c=d.vmdk\" 7\r\n" +
		"DDB.adapterType=lsilogic\r\n\x00\x00\x00\x00"
	d, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := &Descriptor{
		Version: 2, CID: 1, ParentCID: NoParentCID, CreateType: "twoGbMaxExtentFlat",
		Extents: []Extent{
			{Access: AccessRW, Sectors: 1024, Type: TypeFlat, File: "a b-f001.vmdk"},
			{Access: AccessRDONLY, Sectors: 8, Type: TypeZero},
			{Access: AccessNoAccess, Sectors: 16, Type: TypeFlat, File: "c=d.vmdk", Offset: 7},
		},
		DDB: DDB{{"DDB.adapterType", "lsilogic"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got  %+v\nwant %+v", d, want)
	}
	if got, want := d.Size(), int64(1024+8+16)*512; got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	if v, ok := d.DDB.Get("ddb.ADAPTERTYPE"); !ok || v != "lsilogic" {
		t.Errorf("DDB.Get = %q, %v", v, ok)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "version=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
	const ext = "RW 8 FLAT \"f.vmdk\" 0\n"
	tests := []struct {
		name, text string
		want       error
	}{
		{"Empty", "", ErrNotDescriptor},
		{"OnlyComments", "# Disk DescriptorFile\n\n", ErrNotDescriptor},
		{"Binary", "KDMV\x01\x00\x00\x00\x03\x00", ErrNotDescriptor},
		{"JunkAfterNUL", head + ext + "\x00\x00x", ErrNotDescriptor},
		{"Prose", "hello world\n", ErrNotDescriptor},
		{"TooLarge", head + ext + strings.Repeat("#", MaxDescriptorSize), ErrNotDescriptor},
		{"BadVersion", "version=x\n", ErrBadHeader},
		{"Version4", strings.Replace(head, "version=1", "version=4", 1) + ext, ErrInvalid},
		{"BadCID", strings.Replace(head, "CID=1", "CID=xyz", 1) + ext, ErrBadHeader},
		{"CIDTooBig", strings.Replace(head, "CID=1", "CID=100000000", 1) + ext, ErrBadHeader},
		{"RepeatedHeader", head + "CID=2\n" + ext, ErrBadHeader},
		{"UnterminatedQuote", strings.Replace(head, `"monolithicFlat"`, `"monolithicFlat`, 1) + ext, ErrBadHeader},
		{"NoCreateType", "version=1\nCID=1\nparentCID=ffffffff\n" + ext, ErrInvalid},
		{"NoExtents", head, ErrInvalid},
		{"ExtentFewFields", head + "RW 8\n", ErrBadExtent},
		{"ExtentManyFields", head + "RW 8 FLAT \"f\" 0 a b\n", ErrBadExtent},
		{"ExtentBadSize", head + "RW -8 FLAT \"f\" 0\n", ErrBadExtent},
		{"ExtentZeroSize", head + "RW 0 FLAT \"f\" 0\n", ErrBadExtent},
		{"ExtentHugeSize", head + "RW 18014398509481984 FLAT \"f\" 0\n", ErrBadExtent},
		{"ExtentOverflowSum", head + "RW 18014398509481983 FLAT \"f\" 0\nRW 1 ZERO\n", ErrInvalid},
		{"ExtentUnquotedFile", head + "RW 8 FLAT f.vmdk 0\n", ErrBadExtent},
		{"ExtentBadOffset", head + "RW 8 FLAT \"f\" -1\n", ErrBadExtent},
		{"ExtentUnknownType", head + "RW 8 FOO \"f\"\n", ErrInvalid},
		{"ExtentNoFile", head + "RW 8 FLAT\n", ErrInvalid},
		{"ZeroWithFile", head + "RW 8 ZERO \"f\"\n", ErrInvalid},
		{"SparseWithOffset", head + "RW 8 SPARSE \"f\" 3\n", ErrInvalid},
		{"ExtentOpenQuote", head + "RW 8 FLAT \"f 0\n", ErrBadExtent},
		{"DDBRepeated", head + ext + "ddb.a = \"1\"\nDDB.A = \"2\"\n", ErrBadDDB},
		{"DDBStrayQuote", head + ext + "ddb.a = \"1\"2\"\n", ErrBadDDB},
		{"KeyWithSpace", head + ext + "ddb a = \"1\"\n", ErrNotDescriptor},
		{"ControlInValue", head + ext + "ddb.a = \"1\x01\"\n", ErrInvalid},
		{"HintWithoutParent", head + ext + "ddb.note = \"parentFileNameHint\"\n", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.text))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %+v, %v; want %v", d, err, tt.want)
			}
		})
	}
}

func TestNewFlat(t *testing.T) {
	d, err := NewFlat(20<<30, "vm1-flat.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.Size(), int64(20<<30); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	if got, _ := d.DDB.Get(DDBGeometryCylinders); got != "41610" {
		t.Errorf("cylinders = %s, want 41610 (qemu-img's value for 20G)", got)
	}
	if d.CID >= 0xfffffffe {
		t.Errorf("CID %08x is reserved", d.CID)
	}
	for _, size := range []int64{0, -512, 511, 1<<20 + 1} {
		if _, err := NewFlat(size, "x-flat.vmdk"); !errors.Is(err, ErrBadSize) {
			t.Errorf("NewFlat(%d) = %v, want ErrBadSize", size, err)
		}
	}
	if _, err := NewFlat(512, `bad"name`); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewFlat with a quote in the name = %v, want ErrInvalid", err)
	}
}

func TestDDBSetDelete(t *testing.T) {
	var db DDB
	db.Set("ddb.a", "1")
	db.Set("ddb.b", "2")
	db.Set("DDB.A", "3")
	if got, want := db, (DDB{{"ddb.a", "3"}, {"ddb.b", "2"}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Set: %v, want %v", got, want)
	}
	db.Delete("ddb.A")
	db.Delete("ddb.missing")
	if got, want := db, (DDB{{"ddb.b", "2"}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Delete: %v, want %v", got, want)
	}
}
