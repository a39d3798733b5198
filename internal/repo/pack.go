package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A pack is one object holding many chunk blobs, and at its end a header
// that lists them, so a pack describes itself: verify reads it whole, an
// index rebuild reads only its tail.
//
//	0      blob 0: a chunk envelope ("XSRC"), sealed under chunkKey(id)
//	...    blobs 1 .. n-1, back to back
//	H      header: envelope "XSRP", never compressed, encrypted when the
//	       repository is (sealed under the name "packs/header"); body:
//	         u32 n (1 .. 65536), then n entries of
//	         { chunk id [32], u32 offset, u32 length }
//	S-4    u32 length of the header envelope (S = the pack's size)
//
// The entries tile [0, H) in order: the first at 0, each next one where
// the previous ends, the last ending at H; no id twice. A pack is named
// packs/<2 hex>/<SHA-256 of its S bytes>.
const (
	packHeaderName = "packs/header" // GCM name of every pack header: must not change
	packEntryLen   = 32 + 4 + 4
	packFooterLen  = 4
	maxPackBlobs   = 1 << 16 // decoders' bound on n
	// packBlobLimit is where writers close a pack whatever its size,
	// keeping headers small (the tail read that finds them is 64 KiB).
	packBlobLimit = 1 << 12
	minBlobLen    = hdrLen + crcLen
	// maxBlobLen: a chunk's blob is stored raw when compression does not
	// shrink it, so it is at most the chunk plus the envelope and seal.
	maxBlobLen    = maxChunkSize + hdrLen + nonceLen + tagLen + crcLen
	packTailGuess = 64 << 10 // first read of a pack's tail
)

// packEntry is one blob of a pack: chunk ID at [Off, Off+Len).
type packEntry struct {
	ID  ID
	Off uint32
	Len uint32
}

func (e packEntry) end() int64 { return int64(e.Off) + int64(e.Len) }

// appendEntries appends the entry table of a pack header or an index.
func appendEntries(dst []byte, entries []packEntry) []byte {
	for _, e := range entries {
		dst = append(dst, e.ID[:]...)
		dst = binary.LittleEndian.AppendUint32(dst, e.Off)
		dst = binary.LittleEndian.AppendUint32(dst, e.Len)
	}
	return dst
}

// readEntry decodes the entry at b (at least packEntryLen bytes).
func readEntry(b []byte) packEntry {
	var e packEntry
	copy(e.ID[:], b)
	e.Off = binary.LittleEndian.Uint32(b[32:])
	e.Len = binary.LittleEndian.Uint32(b[36:])
	return e
}

// finishPack appends the header and footer that describe entries to
// blobs (the pack's blobs, back to back) and returns the whole pack.
func (c *codec) finishPack(blobs []byte, entries []packEntry) []byte {
	body := make([]byte, 4, 4+len(entries)*packEntryLen)
	binary.LittleEndian.PutUint32(body, uint32(len(entries)))
	body = appendEntries(body, entries)
	start := len(blobs)
	pack := c.encode(blobs, magicPack, packHeaderName, body, false, nil)
	return binary.LittleEndian.AppendUint32(pack, uint32(len(pack)-start))
}

// packHeaderLen is the size of the header and footer finishPack writes
// for n entries.
func (c *codec) packHeaderLen(n int) int64 {
	l := int64(hdrLen + 4 + n*packEntryLen + crcLen + packFooterLen)
	if c.aead != nil {
		l += nonceLen + tagLen
	}
	return l
}

// packHeaderSpan locates the header of a pack of size bytes from its
// footer (the last 4 bytes): the header starts at off and is n bytes.
func packHeaderSpan(footer []byte, size int64) (off, n int64, err error) {
	n = int64(binary.LittleEndian.Uint32(footer))
	if n < minBlobLen || n > size-packFooterLen {
		return 0, 0, fmt.Errorf("pack of %d bytes: header length %d: %w", size, n, ErrCorrupt)
	}
	return size - packFooterLen - n, n, nil
}

// decodePackHeader opens a pack header (the envelope's bytes, which it
// overwrites when decrypting) and checks that its entries tile
// [0, blobsEnd).
func (c *codec) decodePackHeader(hdr []byte, blobsEnd int64) ([]packEntry, error) {
	body, err := c.decode(magicPack, packHeaderName, hdr, 4+maxPackBlobs*packEntryLen, nil)
	if err != nil {
		return nil, fmt.Errorf("pack header: %w", err)
	}
	return parsePackEntries(body, blobsEnd)
}

// parsePackEntries parses a pack header's body.
func parsePackEntries(body []byte, blobsEnd int64) ([]packEntry, error) {
	if len(body) < 4 {
		return nil, fmt.Errorf("pack header body of %d bytes: %w", len(body), ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(body)
	if n == 0 || n > maxPackBlobs || uint64(len(body)-4) != uint64(n)*packEntryLen {
		return nil, fmt.Errorf("pack header lists %d blobs in %d bytes: %w", n, len(body), ErrCorrupt)
	}
	entries := make([]packEntry, n)
	seen := make(map[ID]struct{}, n)
	var pos int64
	for i := range entries {
		e := readEntry(body[4+i*packEntryLen:])
		if int64(e.Off) != pos || e.Len < minBlobLen || e.Len > maxBlobLen || e.ID.IsNull() {
			return nil, fmt.Errorf("pack header entry %d: chunk %s at [%d, +%d), want offset %d: %w", i, e.ID, e.Off, e.Len, pos, ErrCorrupt)
		}
		if _, dup := seen[e.ID]; dup {
			return nil, fmt.Errorf("pack header lists chunk %s twice: %w", e.ID, ErrCorrupt)
		}
		seen[e.ID] = struct{}{}
		pos = e.end()
		entries[i] = e
	}
	if pos != blobsEnd {
		return nil, fmt.Errorf("pack header's blobs end at %d, the header starts at %d: %w", pos, blobsEnd, ErrCorrupt)
	}
	return entries, nil
}

// decodePackObject checks a whole pack object's footer and header and
// returns its entries. obj is left intact.
func (c *codec) decodePackObject(obj []byte) ([]packEntry, error) {
	size := int64(len(obj))
	if size < packFooterLen+minBlobLen {
		return nil, fmt.Errorf("pack of %d bytes: %w", size, ErrCorrupt)
	}
	off, n, err := packHeaderSpan(obj[size-packFooterLen:], size)
	if err != nil {
		return nil, err
	}
	return c.decodePackHeader(bytes.Clone(obj[off:off+n]), off)
}

// readPackHeader reads the header of pack id (size bytes, as listed) from
// its tail: one ranged read, two when the header is larger than
// packTailGuess. Errors wrap ErrCorrupt, backend.ErrNotExist or a backend
// error.
func (r *Repo) readPackHeader(ctx context.Context, id ID, size int64) ([]packEntry, error) {
	key := packKey(id)
	if size < packFooterLen+minBlobLen {
		return nil, fmt.Errorf("pack %s of %d bytes: %w", key, size, ErrCorrupt)
	}
	tailLen := min(size, packTailGuess)
	tail, err := r.b.GetRange(ctx, key, size-tailLen, tailLen)
	if err != nil {
		return nil, fmt.Errorf("read pack %s: %w", key, shortIsCorrupt(err))
	}
	off, n, err := packHeaderSpan(tail[tailLen-packFooterLen:], size)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", key, err)
	}
	hdr := tail[tailLen-packFooterLen-min(n, tailLen-packFooterLen) : tailLen-packFooterLen]
	if int64(len(hdr)) < n {
		if hdr, err = r.b.GetRange(ctx, key, off, n); err != nil {
			return nil, fmt.Errorf("read pack %s: %w", key, shortIsCorrupt(err))
		}
	}
	entries, err := r.codec.decodePackHeader(hdr, off)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", key, err)
	}
	return entries, nil
}

// shortIsCorrupt marks a read past an object's end (io.ErrUnexpectedEOF:
// shorter than the index or header says) as corruption.
func shortIsCorrupt(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	return err
}

// openBlob checks a chunk blob (crc, GCM tag, decompression to at most
// limit bytes, re-hash to id) and returns its plaintext, which may alias
// blob or dst. blob is overwritten when decrypting.
func (c *codec) openBlob(id ID, blob []byte, limit int, dst []byte) ([]byte, error) {
	p, err := c.decode(magicChunk, chunkKey(id), blob, limit, dst)
	if err != nil {
		return nil, err
	}
	if c.chunkID(p) != id {
		return nil, fmt.Errorf("content does not hash to the chunk id: %w", ErrCorrupt)
	}
	return p, nil
}

// contentID is the id (name) of a pack or an index object: the SHA-256
// of its bytes.
func contentID(obj []byte) ID { return sha256.Sum256(obj) }
