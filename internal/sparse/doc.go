// Package sparse reads and writes VMDK hosted sparse extents with an
// embedded descriptor ("monolithicSparse"): the on-disk delta layer of
// snapshots and linked clones (shared/ref/vmdk-format.asciidoc, "The VMDK
// sparse extent data file"). Files are laid out byte for byte as
//
//	qemu-img create -f vmdk -o subformat=monolithicSparse,zeroed_grain=on -b PARENT -F vmdk DELTA
//
// writes them, so qemu-img and qemu-io read and write a chain of them
// without the daemon. The layout of an extent Create makes (sectors of 512
// bytes; N grain tables for the capacity, G = ceil(N*4/512)):
//
//	sector 0             header: "KDMV", version 2, flags 0x7, capacity, grain 128, ...
//	1 .. 20              embedded descriptor text, NUL-padded
//	21                   redundant grain directory (G sectors): N sector numbers
//	21+G                 redundant grain tables, 4 sectors (512 entries) each
//	21+G+4N              grain directory (G sectors)
//	21+2G+4N             grain tables, 4 sectors each
//	overhead             first grain (overhead = end of the tables rounded up to 128)
//	...                  64 KiB grains, appended in allocation order
//
// A grain table entry is 0 (the grain is not in this extent: read the
// parent), 1 (a zeroed grain: reads as zeros, hides the parent) or the
// sector of the grain's data.
//
// This package is the file format only; the chain device (internal/chain)
// merges partial writes with the layers below, keeps one writer per grain
// and decides what a read of an unallocated grain returns. Grain tables are
// kept in memory (4 bytes per grain) so Lookup does no I/O.
//
// # Durability and crashes
//
// Data is written before the entry that points to it: AllocateGrain
// appends the grain and updates the entry in memory only; Flush syncs the
// data, then writes the changed grain table sectors (primary, then
// redundant), then syncs again. After a crash at any point the file opens
// and every grain written before the last successful Flush reads back.
// Grains allocated after it may be leaked: their space stays in the file,
// unused, because Open appends new grains at the file size rounded up to a
// grain, never below. A zeroed or reallocated grain's old data also stays,
// unused. Only qemu-img convert reclaims that space.
package sparse
