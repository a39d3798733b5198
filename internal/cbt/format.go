package cbt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"regexp"
	"time"
)

// Format constants of the bitmap file (doc.go draws the layout).
const (
	// Granularity is the bytes one bit covers: QEMU's default.
	Granularity = 64 << 10

	// MaxBitmaps is the most bitmaps a volume has (header entries).
	MaxBitmaps = 32

	// MaxNameLen bounds bitmap and volume names in bytes.
	MaxNameLen = 64

	pageSize     = 4096
	pageDataLen  = pageSize - 8      // bits of a data page; then index and crc
	pageBits     = pageDataLen * 8   // 32704 blocks per page
	pageWords    = pageDataLen / 8   // 511 uint64 words per page
	crcOff       = pageSize - 4      // every page ends with its crc32c
	hdrEntryOff  = 128               // first bitmap entry in the header page
	hdrEntrySize = 80                // name[64] + created i64 + zero u64
	bmVersion    = 1                 // bitmap file version: must not change
	alVersion    = 1                 // AL record version: must not change
	bmMagic      = "XSPCBTBM"        // bitmap file magic: must not change
	alMagic      = "XSPCBTAL"        // AL record magic: must not change
	maxALEntries = (crcOff - 40) / 8 // 506 extents fit a record
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// nameRE is the bitmap naming rule (the volume rule of the datastore):
// a letter or digit, then letters, digits, '.', '_' and '-'.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckName returns an error wrapping ErrInvalidName when name is not a
// valid bitmap name.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("bitmap name %q: must start with a letter or digit and contain only letters, digits, '.', '_' and '-' (at most %d characters): %w",
			name, MaxNameLen, ErrInvalidName)
	}
	return nil
}

// Header is the first page of a bitmap file.
type Header struct {
	Volume  string
	Size    int64 // volume size in bytes
	Bitmaps []Entry
}

// Entry names one bitmap of the file; its pages follow in entry order.
type Entry struct {
	Name    string
	Created time.Time
}

// blocks is the number of bits of a bitmap over size bytes.
func blocks(size int64) int64 { return (size + Granularity - 1) / Granularity }

// pagesPer is the number of data pages of one bitmap over size bytes.
func pagesPer(size int64) int64 { return (blocks(size) + pageBits - 1) / pageBits }

// Validate checks the fields a decoded or about-to-be-written header
// must satisfy.
func (h *Header) Validate() error {
	if !nameRE.MatchString(h.Volume) {
		return fmt.Errorf("bitmap header: volume name %q: %w", h.Volume, ErrCorrupt)
	}
	if h.Size <= 0 || h.Size > 1<<60 {
		return fmt.Errorf("bitmap header: volume size %d: %w", h.Size, ErrCorrupt)
	}
	if len(h.Bitmaps) > MaxBitmaps {
		return fmt.Errorf("bitmap header: %d bitmaps, at most %d: %w", len(h.Bitmaps), MaxBitmaps, ErrCorrupt)
	}
	seen := map[string]bool{}
	for _, b := range h.Bitmaps {
		if !nameRE.MatchString(b.Name) || seen[b.Name] {
			return fmt.Errorf("bitmap header: bitmap name %q invalid or repeated: %w", b.Name, ErrCorrupt)
		}
		seen[b.Name] = true
	}
	return nil
}

// encodeHeader returns the header page.
func encodeHeader(h *Header) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	p := make([]byte, pageSize)
	copy(p, bmMagic)
	le := binary.LittleEndian
	le.PutUint32(p[8:], bmVersion)
	le.PutUint32(p[12:], uint32(len(h.Bitmaps)))
	le.PutUint64(p[16:], uint64(h.Size))
	le.PutUint32(p[24:], Granularity)
	le.PutUint32(p[28:], pageBits)
	copy(p[32:96], h.Volume)
	for i, b := range h.Bitmaps {
		e := p[hdrEntryOff+i*hdrEntrySize:]
		copy(e[:MaxNameLen], b.Name)
		le.PutUint64(e[64:], uint64(b.Created.UnixNano()))
	}
	le.PutUint32(p[crcOff:], crc32.Checksum(p[:crcOff], castagnoli))
	return p, nil
}

// DecodeHeader parses and validates a header page (at least pageSize
// bytes; only the first page is read).
func DecodeHeader(b []byte) (*Header, error) {
	if len(b) < pageSize {
		return nil, fmt.Errorf("bitmap header: %d bytes, want %d: %w", len(b), pageSize, ErrCorrupt)
	}
	p := b[:pageSize]
	le := binary.LittleEndian
	if string(p[:8]) != bmMagic {
		return nil, fmt.Errorf("bitmap header: bad magic %q: %w", p[:8], ErrCorrupt)
	}
	if got, want := le.Uint32(p[crcOff:]), crc32.Checksum(p[:crcOff], castagnoli); got != want {
		return nil, fmt.Errorf("bitmap header: crc32c %08x, computed %08x: %w", got, want, ErrCorrupt)
	}
	if v := le.Uint32(p[8:]); v != bmVersion {
		return nil, fmt.Errorf("bitmap header: version %d, this daemon reads %d: %w", v, bmVersion, ErrCorrupt)
	}
	if g, pb := le.Uint32(p[24:]), le.Uint32(p[28:]); g != Granularity || pb != pageBits {
		return nil, fmt.Errorf("bitmap header: granularity %d, bits per page %d: %w", g, pb, ErrCorrupt)
	}
	n := le.Uint32(p[12:])
	if n > MaxBitmaps {
		return nil, fmt.Errorf("bitmap header: %d bitmaps: %w", n, ErrCorrupt)
	}
	h := &Header{Volume: cstring(p[32:96]), Size: int64(le.Uint64(p[16:]))}
	if le.Uint64(p[16:]) > 1<<60 {
		return nil, fmt.Errorf("bitmap header: volume size %d: %w", le.Uint64(p[16:]), ErrCorrupt)
	}
	for i := range int(n) {
		e := p[hdrEntryOff+i*hdrEntrySize:]
		h.Bitmaps = append(h.Bitmaps, Entry{Name: cstring(e[:MaxNameLen]), Created: time.Unix(0, int64(le.Uint64(e[64:]))).UTC()})
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// cstring is a NUL-padded field as a string.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// encodePage fills p (pageSize bytes) with the words of one data page
// (at most pageWords; missing words are zero) and its trailer. index is
// the page's index in the file.
func encodePage(p []byte, words []uint64, index uint32) {
	clear(p[:pageSize])
	le := binary.LittleEndian
	for i, w := range words {
		le.PutUint64(p[i*8:], w)
	}
	le.PutUint32(p[pageDataLen:], index)
	le.PutUint32(p[crcOff:], crc32.Checksum(p[:crcOff], castagnoli))
}

// decodePage reads a data page into words (at most pageWords). It fails
// with ErrCorrupt when the checksum or the index is wrong.
func decodePage(p []byte, words []uint64, index uint32) error {
	if len(p) < pageSize {
		return fmt.Errorf("bitmap page %d: %d bytes: %w", index, len(p), ErrCorrupt)
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(p[crcOff:]), crc32.Checksum(p[:crcOff], castagnoli); got != want {
		return fmt.Errorf("bitmap page %d: crc32c %08x, computed %08x: %w", index, got, want, ErrCorrupt)
	}
	if got := le.Uint32(p[pageDataLen:]); got != index {
		return fmt.Errorf("bitmap page %d: carries index %d: %w", index, got, ErrCorrupt)
	}
	for i := range min(len(words), pageWords) {
		words[i] = le.Uint64(p[i*8:])
	}
	return nil
}
