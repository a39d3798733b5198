package vmdk

import (
	"fmt"
	"math/rand/v2"
	"strconv"
)

// NewFlat returns the descriptor of a monolithicFlat disk of sizeBytes
// (a positive multiple of 512) whose raw extent is flatFileName, relative
// to the descriptor's directory. The CID is random; the disk database
// holds what qemu-img writes for an IDE disk (hardware version 4 and the
// geometry qemu computes: cylinders = size / (16 heads * 63 sectors * 512)).
func NewFlat(sizeBytes int64, flatFileName string) (*Descriptor, error) {
	if sizeBytes <= 0 || sizeBytes%SectorSize != 0 {
		return nil, fmt.Errorf("new flat descriptor of %d bytes: %w", sizeBytes, ErrBadSize)
	}
	const heads, sectors = 16, 63
	d := &Descriptor{
		Version:    1,
		CID:        newCID(),
		ParentCID:  NoParentCID,
		CreateType: CreateTypeMonolithicFlat,
		Extents: []Extent{{
			Access:  AccessRW,
			Sectors: sizeBytes / SectorSize,
			Type:    TypeFlat,
			File:    flatFileName,
		}},
		DDB: DDB{
			{DDBVirtualHWVersion, "4"},
			{DDBGeometryCylinders, strconv.FormatInt(sizeBytes/(heads*sectors*SectorSize), 10)},
			{DDBGeometryHeads, strconv.Itoa(heads)},
			{DDBGeometrySectors, strconv.Itoa(sectors)},
			{DDBAdapterType, "ide"},
		},
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("new flat descriptor for %q: %w", flatFileName, err)
	}
	return d, nil
}

// newCID returns a random content id that is neither ffffffff (no parent)
// nor fffffffe (VMware's "use the long content id").
func newCID() uint32 {
	for {
		if c := rand.Uint32(); c < 0xfffffffe {
			return c
		}
	}
}
