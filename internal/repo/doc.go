// Package repo is the backup repository: content-addressed chunks,
// logically full backups (manifests), optional encryption, dedup across
// backups and volumes, restore, instant-restore reads, verify, and a
// crash-safe prune. It stores objects through backend.Backend (a local
// directory or S3); docs/REPO-FORMAT.md describes every byte.
//
// Objects:
//
//	config                   repository id, format version, chunk size, encryption parameters
//	chunks/<2 hex>/<64 hex>  one chunk, named by its id
//	snapshots/<backup id>    one backup's manifest ("20261124-231236-1a2b3c4d")
//	locks/<24 hex>           one lock of a running operation
//
// Every object is one envelope (little-endian):
//
//	0   [4] magic  "XSRK" config | "XSRC" chunk | "XSRM" manifest | "XSRL" lock   (must not change)
//	4   u8  version = 1                                                        (must not change)
//	5   u8  flags: bit 0 zstd, bit 1 AES-256-GCM (nonce[12] || sealed body || tag[16],
//	        additional data = bytes 0..11 || object key)
//	6   u16 zero
//	8   u32 plaintext length
//	12      payload
//	end [4] crc32c (Castagnoli) of every byte before it
//
// Chunking is fixed-size and aligned to disk offsets (Proxmox Backup
// Server's fixed index): chunk i of a volume covers [i*cs, (i+1)*cs), the
// last one may be short. A chunk's id is the SHA-256 of its plaintext, or
// HMAC-SHA256 under a key derived from the master key when the repository
// is encrypted. An all-zero chunk is never stored: the manifest holds the
// null id (32 zero bytes) for it. Every read of a chunk checks the crc,
// the GCM tag, the decompressed length and the hash against the id; a
// chunk that fails is an error (*ChunkError naming backup, volume, offset
// and chunk), never data.
//
// A manifest lists, for each volume, the id of every chunk: restore and
// prune never walk a chain. A backup uploads its chunks first and writes
// its manifest last, so a killed backup leaves only unreferenced chunks,
// which the next backup reuses (it lists chunks/ once at start) and prune
// sweeps otherwise. An incremental backup (VolumeOptions.Prev + Dirty)
// reads only the chunks that touch a dirty range and takes the others'
// ids from the previous manifest, provided the repository still holds them.
//
// Locks (locks/<random>, written then checked against the others, since
// backends have no compare-and-swap): backup takes a shared "backup" lock,
// restore/serve/verify a "read" lock naming the backups read, forget and
// prune an "exclusive" one naming the backups deleted. Exclusive excludes
// backups, other exclusives and reads of the backups it deletes. Locks
// are refreshed every 5 minutes; one not refreshed for 30 minutes, or
// held by a dead process of this host, is stale and removed by the next
// taker. An operation whose lock was removed stops before its next write
// (ErrLockLost).
//
// Prune: delete the forgotten manifests, mark the chunks every remaining
// manifest references (stop if one cannot be read), sweep the rest. A
// crash at any point leaves a valid repository.
//
// Encryption: a random 32-byte master key, sealed with AES-256-GCM under
// argon2id(password, salt) (parameters in the config). HKDF-SHA256 of
// the master key gives the data key (AES-256-GCM of every chunk, manifest
// and lock) and the chunk-id key. The config itself is never encrypted.
package repo
