// Package repo is the backup repository: content-addressed chunks packed
// into large objects, logically full backups (manifests), optional
// encryption, dedup across backups and volumes, restore, instant-restore
// reads, verify, and a crash-safe prune that repacks. It stores objects
// through backend.Backend (a local directory or S3); docs/FORMATS.md
// section 6 describes every byte.
//
// Objects (format version 2):
//
//	config                  repository id, format version, chunk and pack size, encryption parameters
//	packs/<2 hex>/<64 hex>  a pack: chunk blobs back to back, then a header listing them (self-describing)
//	index/<64 hex>          an index object: chunk id -> pack, offset, length, for some packs
//	snapshots/<backup id>   one backup's manifest ("20261124-231236-1a2b3c4d")
//	locks/<24 hex>          one lock of a running operation
//
// Every object, and every chunk blob in a pack, is one envelope
// (little-endian):
//
//	0   [4] magic  "XSRK" config | "XSRC" chunk | "XSRM" manifest | "XSRL" lock |
//	           "XSRP" pack header | "XSRI" index                          (must not change)
//	4   u8  version = 1                                                   (must not change)
//	5   u8  flags: bit 0 zstd, bit 1 AES-256-GCM (nonce[12] || sealed body || tag[16],
//	        additional data = bytes 0..11 || the envelope's name)
//	6   u16 zero
//	8   u32 plaintext length
//	12      payload
//	end [4] crc32c (Castagnoli) of the envelope's bytes before it
//
// Chunking is fixed-size and aligned to disk offsets (Proxmox Backup
// Server's fixed index): chunk i of a volume covers [i*cs, (i+1)*cs), the
// last one may be short; 64 KiB by default, the CBT granularity, so an
// incremental backup stores about what changed. A chunk's id is the
// SHA-256 of its plaintext, or HMAC-SHA256 under a key derived from the
// master key when the repository is encrypted. An all-zero chunk is never
// stored: the manifest holds the null id (32 zero bytes) for it. Every
// read of a chunk checks the crc, the GCM tag, the decompressed length and
// the hash against the id; a chunk that fails is an error (*ChunkError
// naming backup, volume, offset and chunk), never data.
//
// Chunks are appended to packs of about 16 MiB (restic's blobs in packs),
// so the backend sees one Put per pack, not per chunk. The index objects
// say where each chunk is; the repository loads them all (not a listing
// of chunks) to deduplicate and to read. Restore and the volume reader
// fetch chunks with ranged reads, coalescing the chunks of one pack.
//
// A manifest lists, for each volume, the id of every chunk: restore and
// prune never walk a chain. A backup stores its packs first, then their
// index, and writes its manifest last, so a killed backup leaves only
// unreferenced chunks, perhaps in packs no index names; the next backup
// reads those packs' headers, reuses their chunks and indexes them. An
// incremental backup (VolumeOptions.Prev + Dirty) reads only the chunks
// that touch a dirty range and takes the others' ids from the previous
// manifest, provided the repository still holds them.
//
// Locks (locks/<random>, written then checked against the others, since
// backends have no compare-and-swap): backup takes a shared "backup" lock,
// restore/serve/verify a "read" lock naming the backups read, forget,
// prune and repair an "exclusive" one naming the backups deleted.
// Exclusive excludes backups, other exclusives and reads of the backups
// it deletes. Locks are refreshed every 5 minutes; one not refreshed for
// 30 minutes, or held by a dead process of this host, is stale and
// removed by the next taker. An operation whose lock was removed stops
// before its next write (ErrLockLost).
//
// Prune: delete the forgotten manifests, mark the chunks every remaining
// manifest references (stop if one cannot be read), keep one copy of
// each, repack the packs that are mostly garbage into new packs, write
// the new index, delete the superseded index objects, then the dead
// packs. A crash at any point leaves a valid repository.
//
// Encryption: a random 32-byte master key, sealed with AES-256-GCM under
// argon2id(password, salt) (parameters in the config). HKDF-SHA256 of
// the master key gives the data key (AES-256-GCM of every chunk, pack
// header, index object, manifest and lock) and the chunk-id key. The
// config itself is never encrypted.
package repo
