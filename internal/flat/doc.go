// Package flat is the leaf Device of Extrasphere: a raw file (the flat
// extent) described by a VMDK monolithicFlat descriptor.
//
// On disk a volume is two files in one directory:
//
//	<name>.vmdk        text descriptor (package vmdk), written atomically
//	<name>-flat.vmdk   raw bytes of the virtual disk, byte i of the disk at
//	                   offset i; sparse unless created preallocated
//
// # Caching mode
//
// The flat file is opened without O_DIRECT and read and written with
// pread/pwrite through the page cache. O_DIRECT would need every buffer,
// offset and length aligned to the logical block size, and NBD requests are
// byte-granular (qemu-io writes at odd offsets; MinBlock is 1), so every
// unaligned request would become a read-modify-write with its own locking.
// The page cache also gives the read-ahead and write coalescing that make
// nbdkit's file plugin fast. This is qemu's cache=writeback.
//
// FLUSH and FUA still mean durable:
//
//   - Flush calls fdatasync(2) on the flat file: every write that completed
//     before it reaches stable storage, with the metadata needed to read it
//     back (block allocation, file size).
//   - A FUA write is pwrite followed by fdatasync. Not pwritev2 with
//     RWF_DSYNC: its error cannot tell a write that failed with nothing
//     written (ENOSPC, which the guest recovers from) from a sync that
//     failed (which must stick, below).
//   - FUA on WriteZeroes and Trim is an fdatasync after the fallocate.
//
// All handles of one Device share the file, so a Flush covers writes made
// through any connection (MultiConn).
//
// A failed sync is sticky (sync.go): after an fdatasync failed, the
// page cache may have dropped the data while a retried sync would succeed, so every later Flush and write fails with
// ErrSyncFailed until the volume is reopened. FailpointDataSync injects
// that failure in tests.
//
// # Holes and zeros
//
// Trim punches holes (fallocate PUNCH_HOLE|KEEP_SIZE) over the whole
// filesystem blocks inside the range and leaves partial blocks as they
// are, which Trim allows. WriteZeroes punches the exact range (the kernel
// zeroes partial blocks) unless NoHole is set or the volume is
// preallocated; then it uses FALLOC_FL_ZERO_RANGE, which keeps the blocks
// allocated, and falls back to writing zeros. BlockStatus reports holes
// from SEEK_DATA/SEEK_HOLE as StateHole|StateZero.
//
// A preallocated volume (ddb.extrasphere.preallocated = "true") never gets
// holes: Trim is a no-op and WriteZeroes always keeps the blocks.
package flat
