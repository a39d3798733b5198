package vmdk

import "strings"

// SectorSize is the VMDK sector: extent sizes and offsets count 512-byte
// sectors. Must not change.
const SectorSize = 512

// MaxDescriptorSize bounds the text Parse accepts (qemu reads at most 1 MiB).
const MaxDescriptorSize = 1 << 20

// NoParentCID is the parentCID of a disk without a parent.
const NoParentCID uint32 = 0xffffffff

// CreateTypeMonolithicFlat is the createType of an Extrasphere base volume.
const CreateTypeMonolithicFlat = "monolithicFlat"

// Extent access modes.
const (
	AccessRW       = "RW"
	AccessRDONLY   = "RDONLY"
	AccessNoAccess = "NOACCESS"
)

// Extent types.
const (
	TypeFlat       = "FLAT"       // raw extent file, has an offset
	TypeSparse     = "SPARSE"     // hosted sparse extent file
	TypeZero       = "ZERO"       // reads as zeros, no file
	TypeVMFS       = "VMFS"       // raw extent on VMFS, no offset written
	TypeVMFSSparse = "VMFSSPARSE" // COWD sparse extent
	TypeVMFSRDM    = "VMFSRDM"    // raw device mapping
	TypeVMFSRaw    = "VMFSRAW"    // raw device
)

// Disk database keys that Extrasphere reads or writes. Keys match
// case-insensitively.
const (
	DDBVirtualHWVersion    = "ddb.virtualHWVersion"
	DDBAdapterType         = "ddb.adapterType"
	DDBGeometryCylinders   = "ddb.geometry.cylinders"
	DDBGeometryHeads       = "ddb.geometry.heads"
	DDBGeometrySectors     = "ddb.geometry.sectors"
	DDBUUID                = "ddb.uuid"
	DDBLongContentID       = "ddb.longContentID"
	DDBExtraspherePrefix   = "ddb.extrasphere."
	DDBExtrasphereReadOnly = "ddb.extrasphere.readOnly"     // "true": open read-only
	DDBExtraspherePreAlloc = "ddb.extrasphere.preallocated" // "true": keep every block allocated
)

// Descriptor is a parsed VMDK text descriptor.
type Descriptor struct {
	Version            int    // 1, 2 or 3
	CID                uint32 // content id
	ParentCID          uint32 // NoParentCID when there is no parent
	CreateType         string // e.g. CreateTypeMonolithicFlat
	ParentFileNameHint string // path of the parent descriptor, "" for none

	// Header holds the other header keys (encoding, isNativeSnapshot,
	// changeTrackPath, ...) in file order, so a rewrite keeps them.
	Header []KeyValue

	Extents []Extent
	DDB     DDB
}

// Extent is one extent line: Access Sectors Type ["File" [Offset]].
type Extent struct {
	Access  string // AccessRW, AccessRDONLY or AccessNoAccess
	Sectors int64  // size in 512-byte sectors, > 0
	Type    string // TypeFlat, TypeSparse, TypeZero, ...
	File    string // relative to the descriptor's directory; "" for ZERO
	Offset  int64  // start sector inside File (FLAT only)
}

// KeyValue is one key = "value" line.
type KeyValue struct {
	Key, Value string
}

// DDB is the disk database, in file order.
type DDB []KeyValue

// Size is the virtual size in bytes: the sum of the extents.
func (d *Descriptor) Size() int64 {
	var n int64
	for _, e := range d.Extents {
		n += e.Sectors * SectorSize
	}
	return n
}

// Get returns the value of key (matched case-insensitively).
func (db DDB) Get(key string) (string, bool) {
	for _, kv := range db {
		if strings.EqualFold(kv.Key, key) {
			return kv.Value, true
		}
	}
	return "", false
}

// Set replaces the value of key, or appends it.
func (db *DDB) Set(key, value string) {
	for i, kv := range *db {
		if strings.EqualFold(kv.Key, key) {
			(*db)[i].Value = value
			return
		}
	}
	*db = append(*db, KeyValue{Key: key, Value: value})
}

// Delete removes key if present.
func (db *DDB) Delete(key string) {
	for i, kv := range *db {
		if strings.EqualFold(kv.Key, key) {
			*db = append((*db)[:i], (*db)[i+1:]...)
			return
		}
	}
}
