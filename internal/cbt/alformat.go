package cbt

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// DefaultExtentSize is the activity log's unit: a write into a cold
// extent of this many bytes costs one AL record write.
const DefaultExtentSize = 4 << 20

// DefaultALSlots is how many extents the activity log keeps hot (1 GiB
// of working set at 4 MiB extents), and MaxALSlots the most one record
// holds.
const (
	DefaultALSlots = 256
	MaxALSlots     = maxALEntries
)

// alFlagClean marks a record written by a clean stop: the bitmap file is
// exact and the record lists no extent.
const alFlagClean = 1

// Record is one activity-log record: the hot extents at one instant.
type Record struct {
	Seq        uint64
	Clean      bool
	Size       int64   // volume size in bytes
	ExtentSize int64   // bytes per extent
	Extents    []int64 // hot extent indexes, ascending, no repeats
}

// Validate checks a record's fields.
func (r *Record) Validate() error {
	switch {
	case r.Seq == 0:
		return fmt.Errorf("activity log: sequence 0: %w", ErrCorrupt)
	case r.Size <= 0 || r.Size > 1<<60:
		return fmt.Errorf("activity log: volume size %d: %w", r.Size, ErrCorrupt)
	case r.ExtentSize < Granularity || r.ExtentSize > 1<<30 || r.ExtentSize&(r.ExtentSize-1) != 0:
		return fmt.Errorf("activity log: extent size %d (a power of two from %d to 1 GiB): %w", r.ExtentSize, Granularity, ErrCorrupt)
	case len(r.Extents) > maxALEntries:
		return fmt.Errorf("activity log: %d extents, at most %d: %w", len(r.Extents), maxALEntries, ErrCorrupt)
	case r.Clean && len(r.Extents) > 0:
		return fmt.Errorf("activity log: a clean record lists %d extents: %w", len(r.Extents), ErrCorrupt)
	}
	n := (r.Size + r.ExtentSize - 1) / r.ExtentSize
	for i, e := range r.Extents {
		if e < 0 || e >= n || i > 0 && e <= r.Extents[i-1] {
			return fmt.Errorf("activity log: extent %d out of order or past %d extents: %w", e, n, ErrCorrupt)
		}
	}
	return nil
}

// encodeRecord returns the record's slot image.
func encodeRecord(r *Record) ([]byte, error) {
	r.Extents = slices.Clone(r.Extents)
	slices.Sort(r.Extents)
	if err := r.Validate(); err != nil {
		return nil, err
	}
	p := make([]byte, pageSize)
	le := binary.LittleEndian
	copy(p, alMagic)
	le.PutUint32(p[8:], alVersion)
	if r.Clean {
		le.PutUint32(p[12:], alFlagClean)
	}
	le.PutUint64(p[16:], r.Seq)
	le.PutUint64(p[24:], uint64(r.Size))
	le.PutUint32(p[32:], uint32(r.ExtentSize))
	le.PutUint32(p[36:], uint32(len(r.Extents)))
	for i, e := range r.Extents {
		le.PutUint64(p[40+8*i:], uint64(e))
	}
	le.PutUint32(p[crcOff:], crc32.Checksum(p[:crcOff], castagnoli))
	return p, nil
}

// DecodeRecord parses and validates one slot (at least pageSize bytes).
func DecodeRecord(b []byte) (*Record, error) {
	if len(b) < pageSize {
		return nil, fmt.Errorf("activity log: %d bytes, want %d: %w", len(b), pageSize, ErrCorrupt)
	}
	p := b[:pageSize]
	le := binary.LittleEndian
	if string(p[:8]) != alMagic {
		return nil, fmt.Errorf("activity log: bad magic %q: %w", p[:8], ErrCorrupt)
	}
	if got, want := le.Uint32(p[crcOff:]), crc32.Checksum(p[:crcOff], castagnoli); got != want {
		return nil, fmt.Errorf("activity log: crc32c %08x, computed %08x: %w", got, want, ErrCorrupt)
	}
	if v := le.Uint32(p[8:]); v != alVersion {
		return nil, fmt.Errorf("activity log: version %d, this daemon reads %d: %w", v, alVersion, ErrCorrupt)
	}
	flags := le.Uint32(p[12:])
	if flags&^alFlagClean != 0 {
		return nil, fmt.Errorf("activity log: unknown flags %#x: %w", flags, ErrCorrupt)
	}
	size := le.Uint64(p[24:])
	n := le.Uint32(p[36:])
	if n > maxALEntries || size > 1<<60 {
		return nil, fmt.Errorf("activity log: %d extents, size %d: %w", n, size, ErrCorrupt)
	}
	r := &Record{Seq: le.Uint64(p[16:]), Clean: flags&alFlagClean != 0, Size: int64(size),
		ExtentSize: int64(le.Uint32(p[32:]))}
	for i := range int(n) {
		e := le.Uint64(p[40+8*i:])
		if e > 1<<62 {
			return nil, fmt.Errorf("activity log: extent index %d: %w", e, ErrCorrupt)
		}
		r.Extents = append(r.Extents, int64(e))
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// newestRecord returns the valid record with the highest sequence among
// the slots of an AL file image, or nil and the reasons none is valid.
func newestRecord(img []byte) (*Record, []error) {
	var best *Record
	var errs []error
	for slot := range 2 {
		lo := slot * pageSize
		if lo+pageSize > len(img) {
			errs = append(errs, fmt.Errorf("activity log slot %d: missing: %w", slot, ErrCorrupt))
			continue
		}
		r, err := DecodeRecord(img[lo:])
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", slot, err))
			continue
		}
		if r.Seq%2 != uint64(slot) {
			errs = append(errs, fmt.Errorf("activity log slot %d: holds sequence %d: %w", slot, r.Seq, ErrCorrupt))
			continue
		}
		if best == nil || r.Seq > best.Seq {
			best = r
		}
	}
	return best, errs
}
