package sparse

import (
	"encoding/binary"
)

// On-disk constants of a VMDK hosted sparse extent. They are the format's
// and qemu's values: must not change.
const (
	magic       = "KDMV" // bytes 0-3 of the header
	sectorSize  = 512
	headerBytes = 512

	// FormatVersion is the header version Create writes: 2 is the first
	// with the zeroed-grain flag. Version 3 (changed block tracking) would
	// make qemu open the file read-only ("VMDK version 3 must be read
	// only"), so a delta would not be writable by qemu-img commit.
	FormatVersion = 2

	gtesPerGT     = 512                               // grain table entries per grain table
	gteBytes      = 4                                 // one entry: a uint32 sector number
	gtSectors     = gtesPerGT * gteBytes / sectorSize // 4 sectors per grain table
	gtesPerSector = sectorSize / gteBytes             // 128 entries per GT sector

	// DefaultGrainSectors is the grain Create uses: 64 KiB, qemu's and
	// VMware's default, and the CBT granularity.
	DefaultGrainSectors = 128
	minGrainSectors     = 8
	maxGrainSectors     = 2048 // 1 MiB; larger grains are refused as corrupt

	// descSectors is the embedded descriptor area Create reserves. qemu
	// reads and rewrites exactly 20 sectors there (DESC_SIZE) when it
	// updates the CID, so it must be at least 20.
	descSectors     = 20
	descOffset      = 1    // the descriptor follows the header
	maxDescSectors  = 2048 // 1 MiB, vmdk.MaxDescriptorSize
	maxCapSectors   = 1 << 32
	gteZero         = 1 // zeroed grain (with flagZeroGrain)
	gdAtEnd         = ^uint64(0)
	checkBytes      = "\n \r\n"
	checkBytesStart = 73
)

// Header flags (bit values of the spec and of qemu's VMDK4_FLAG_*).
const (
	flagNewlineTest = 1 << 0  // bytes 73-76 hold "\n \r\n"
	flagRedundantGD = 1 << 1  // the secondary (redundant) grain directory is valid
	flagZeroGrain   = 1 << 2  // a grain table entry of 1 is a zeroed grain
	flagCompressed  = 1 << 16 // compressed grains (streamOptimized)
	flagMarkers     = 1 << 17 // markers (streamOptimized)

	createFlags = flagNewlineTest | flagRedundantGD | flagZeroGrain // what qemu-img -o zeroed_grain=on writes
)

// header is the 512-byte file header, all fields little-endian:
//
//	off size field
//	  0   4  magic "KDMV"
//	  4   4  version (1, 2 or 3)
//	  8   4  flags
//	 12   8  capacity, sectors
//	 20   8  grain size, sectors (power of 2, >= 8)
//	 28   8  embedded descriptor offset, sectors (0: none)
//	 36   8  embedded descriptor size, sectors
//	 44   4  grain table entries per grain table (512)
//	 48   8  redundant grain directory offset, sectors
//	 56   8  grain directory offset, sectors
//	 64   8  overhead: sectors of metadata before the first grain
//	 72   1  unclean shutdown (ignored, written 0)
//	 73   4  "\n \r\n" newline detection
//	 77   2  compression (0: none)
//	 79 433  zeros
type header struct {
	Version      uint32
	Flags        uint32
	Capacity     uint64 // sectors
	GrainSectors uint64
	DescOffset   uint64 // sectors
	DescSectors  uint64
	GTEsPerGT    uint32
	RGDOffset    uint64 // sectors
	GDOffset     uint64 // sectors
	Overhead     uint64 // sectors
	Unclean      uint8
	CheckBytes   [4]byte
	Compression  uint16
}

// marshal encodes the header into a 512-byte sector.
func (h *header) marshal() []byte {
	b := make([]byte, headerBytes)
	le := binary.LittleEndian
	copy(b, magic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSectors)
	le.PutUint64(b[28:], h.DescOffset)
	le.PutUint64(b[36:], h.DescSectors)
	le.PutUint32(b[44:], h.GTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.Overhead)
	b[72] = h.Unclean
	copy(b[checkBytesStart:], h.CheckBytes[:])
	le.PutUint16(b[77:], h.Compression)
	return b
}

// unmarshalHeader decodes a 512-byte sector whose magic was checked.
func unmarshalHeader(b []byte) header {
	le := binary.LittleEndian
	h := header{
		Version:      le.Uint32(b[4:]),
		Flags:        le.Uint32(b[8:]),
		Capacity:     le.Uint64(b[12:]),
		GrainSectors: le.Uint64(b[20:]),
		DescOffset:   le.Uint64(b[28:]),
		DescSectors:  le.Uint64(b[36:]),
		GTEsPerGT:    le.Uint32(b[44:]),
		RGDOffset:    le.Uint64(b[48:]),
		GDOffset:     le.Uint64(b[56:]),
		Overhead:     le.Uint64(b[64:]),
		Unclean:      b[72],
		Compression:  le.Uint16(b[77:]),
	}
	copy(h.CheckBytes[:], b[checkBytesStart:])
	return h
}

// geometry is what the grain count implies for the directory.
type geometry struct {
	grains    int64 // grains covering the capacity (the last may be partial)
	gts       int64 // grain tables = grain directory entries
	gdSectors int64 // sectors of one grain directory
}

func geometryOf(capSectors, grainSectors uint64) geometry {
	var g geometry
	g.grains = int64(divUp(capSectors, grainSectors))
	g.gts = int64(divUp(uint64(g.grains), gtesPerGT))
	g.gdSectors = int64(divUp(uint64(g.gts)*gteBytes, sectorSize))
	return g
}

// newHeader is the header Create writes for a capacity in sectors, with
// qemu-img's layout (block/vmdk.c vmdk_init_extent):
//
//	sector 0                header
//	sector 1 .. 20          embedded descriptor, zero-padded
//	sector 21               redundant grain directory (gdSectors)
//	then                    redundant grain tables, 4 sectors each, in order
//	then                    grain directory (gdSectors)
//	then                    grain tables, 4 sectors each, in order
//	overhead (grain-aligned) first grain; grains are appended in allocation order
func newHeader(capSectors uint64) header {
	g := geometryOf(capSectors, DefaultGrainSectors)
	tables := uint64(g.gts * gtSectors)
	h := header{
		Version:      FormatVersion,
		Flags:        createFlags,
		Capacity:     capSectors,
		GrainSectors: DefaultGrainSectors,
		DescOffset:   descOffset,
		DescSectors:  descSectors,
		GTEsPerGT:    gtesPerGT,
		RGDOffset:    descOffset + descSectors,
	}
	h.GDOffset = h.RGDOffset + uint64(g.gdSectors) + tables
	h.Overhead = roundUp(h.GDOffset+uint64(g.gdSectors)+tables, DefaultGrainSectors)
	copy(h.CheckBytes[:], checkBytes)
	return h
}

// tableSector is the sector of grain table i in a directory starting at
// gd (newHeader's layout: the tables follow their directory).
func tableSector(gd uint64, gdSectors, i int64) uint32 {
	return uint32(gd + uint64(gdSectors) + uint64(i)*gtSectors)
}

func divUp(a, b uint64) uint64 { return a/b + min(a%b, 1) }

func roundUp(a, b uint64) uint64 { return divUp(a, b) * b }
