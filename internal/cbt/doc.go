// Package cbt is changed-block tracking: named dirty bitmaps per volume at
// 64 KiB granularity, kept in memory, served as the NBD meta contexts
// "qemu:dirty-bitmap:NAME", and made crash-safe without a bitmap write per
// I/O by an activity log of hot extents (DRBD's idea).
//
// The one invariant: a bitmap may over-report, never under-report. Every
// byte a write, zero or trim may have changed since the bitmap was enabled
// or cleared is in a dirty block, in memory at once and on disk after any
// crash.
//
// How it holds across a crash. The disk is cut into extents (4 MiB). The
// activity log (AL) is the set of hot extents, at most ALSlots (256) of
// them. Before the first write into a cold extent is passed down, the
// extent joins the AL and the AL record is written and fdatasync'ed; a
// write into a hot extent costs nothing more than setting bits in memory.
// An extent leaves the AL only when no write into it is in flight, and only
// after the bitmap pages holding its bits have been written and
// fdatasync'ed; then the next AL record drops it. So on disk, at every
// instant, every block written since its bitmap's reset point is dirty in
// the bitmap file or lies in an extent of the newest AL record. Open loads
// the bitmap file and counts every extent of that record dirty in every
// bitmap; a clean stop writes every bitmap and an empty record marked
// clean, so after it nothing is added.
//
// Order of one write (Tracker.WriteAt, WriteZeroes, Trim):
//
//	pin the extents (wait for a free AL slot if all are in use)
//	if an extent is new to the AL: write AL record, fdatasync   <- before the data
//	set the bits in every bitmap (in memory)                    <- before the ack
//	pass the write down; unpin when it returns
//
// A request that spans more extents than a quarter of the AL (a large
// zero or trim) skips the AL: its bits are set and their bitmap pages
// written and fdatasync'ed before it is passed down.
//
// Files (see docs/FORMATS.md, "Changed-block tracking"), in $DATA/cbt/:
//
//	<vol>.bitmaps   header page, then every bitmap's pages
//	<vol>.al        two AL record slots, written alternately
//
// Bitmap file, little-endian, 4096-byte pages:
//
//	page 0 (header)
//	  0  [8]  magic "XSPCBTBM"            (must not change)
//	  8  u32  version = 1                 (must not change)
//	  12 u32  bitmap count (<= 32)
//	  16 u64  volume size in bytes
//	  24 u32  granularity = 65536
//	  28 u32  bits per page = 32704
//	  32 [64] volume name, NUL-padded
//	  96 [32] zero
//	  128     32 entries of 80 bytes: [64] name NUL-padded, i64 created
//	          (Unix ns), u64 zero; unused entries all zero
//	  4092 u32 crc32c (Castagnoli) of bytes 0..4091
//	page 1 + k*P + p (bitmap k, its page p; P = ceil(blocks / 32704))
//	  0    [4088] bits: block p*32704+i is byte i/8, bit i%8 (1 = dirty)
//	  4088 u32 the page's own index in the file (1 + k*P + p)
//	  4092 u32 crc32c of bytes 0..4091
//
// AL file: two 4096-byte slots; record seq goes to slot seq%2, so a torn
// write leaves the previous record whole:
//
//	0  [8]  magic "XSPCBTAL"              (must not change)
//	8  u32  version = 1                   (must not change)
//	12 u32  flags: bit 0 clean (the bitmap file is exact; count is 0)
//	16 u64  seq (>= 1; the newest valid record wins)
//	24 u64  volume size in bytes
//	32 u32  extent size in bytes (4 MiB)
//	36 u32  count (<= 506)
//	40      count x u64 extent index, ascending; then zeros
//	4092 u32 crc32c of bytes 0..4091
//
// A bitmap page whose checksum or index is wrong (a torn in-place write)
// loads as all dirty; an AL file with no valid record loads as every block
// dirty. Both are over-reports, which the invariant allows.
package cbt
