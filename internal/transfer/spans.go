package transfer

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// dataSpans lists the ranges of f below size that may hold data, using
// SEEK_DATA/SEEK_HOLE to skip holes without reading them. Where the
// filesystem or file type does not support them, the whole range is one
// span (and zero blocks are still skipped after reading).
func dataSpans(f *os.File, size int64) []blockdev.Range {
	fd := int(f.Fd())
	var out []blockdev.Range
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to EOF remains
		}
		if err != nil {
			return append(out, blockdev.Range{Off: off, Len: size - off})
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if hole <= data { // cannot happen on a sane filesystem; do not loop
			return append(out, blockdev.Range{Off: data, Len: size - data})
		}
		out = append(out, blockdev.Range{Off: data, Len: hole - data})
		off = hole
	}
	return out
}

// chunks splits spans into pieces of at most n bytes that start on
// multiples of n, so a worker's I/O stays aligned.
func chunks(spans []blockdev.Range, n int64) []blockdev.Range {
	var out []blockdev.Range
	for _, s := range spans {
		for off, end := s.Off, s.Off+s.Len; off < end; {
			next := (off/n + 1) * n
			if next > end {
				next = end
			}
			out = append(out, blockdev.Range{Off: off, Len: next - off})
			off = next
		}
	}
	return out
}

// alignSpans widens every range to multiples of a (a power of two or any
// positive size), clamped to limit, and merges overlaps.
func alignSpans(spans []blockdev.Range, a, limit int64) []blockdev.Range {
	if a <= 1 {
		return spans
	}
	var out []blockdev.Range
	for _, s := range spans {
		start := s.Off / a * a
		end := (s.Off + s.Len + a - 1) / a * a
		if end > limit {
			end = limit
		}
		if n := len(out); n > 0 && start <= out[n-1].Off+out[n-1].Len {
			if e := out[n-1].Off + out[n-1].Len; end > e {
				out[n-1].Len = end - out[n-1].Off
			}
			continue
		}
		out = append(out, blockdev.Range{Off: start, Len: end - start})
	}
	return out
}
