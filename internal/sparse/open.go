package sparse

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Open opens the sparse extent at path, read-only or read-write. It reads
// and checks the header (ErrNotSparse without the magic; ErrCorrupt or
// ErrUnsupported naming the field), the embedded descriptor (a
// monolithicSparse with one SPARSE extent of the header's capacity), both
// grain directories and every grain table, which it keeps in memory. It
// never changes the file. Read-write is refused (ErrUnsupported) for
// version 3 extents (their changed block tracking would go stale, as qemu
// refuses too) and for extents with unallocated grain tables.
//
// New grains are appended at the file size rounded up to a grain, so a
// grain written but never made durable by Flush (leaked by a crash) is
// never reused.
func Open(path string, readOnly bool) (*Extent, error) {
	flags := unix.O_RDWR
	if readOnly {
		flags = unix.O_RDONLY
	}
	fd, err := openFile(path, flags|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("open sparse extent %s: %w", path, err)
	}
	e, err := load(path, fd, readOnly)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open sparse extent %s: %w", path, err)
	}
	return e, nil
}

// load builds an Extent over an open file.
func load(path string, fd int, readOnly bool) (*Extent, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a regular file: %w", ErrNotSparse)
	}
	size := st.Size
	f := fileIO{path: path, fd: fd, sys: realSys()}
	raw := make([]byte, headerBytes)
	if err := f.readAt(raw[:min(int64(len(magic)), size)], 0); err != nil {
		return nil, err
	}
	if size < int64(len(magic)) || string(raw[:len(magic)]) != magic {
		return nil, ErrNotSparse
	}
	if size < headerBytes {
		return nil, corrupt("file of %d bytes is shorter than the header", size)
	}
	if err := f.readAt(raw, 0); err != nil {
		return nil, err
	}
	h := unmarshalHeader(raw)
	if err := h.validate(size); err != nil {
		return nil, err
	}
	if !readOnly && h.Version == 3 {
		return nil, fmt.Errorf("version 3 (changed block tracking) opens read-only: %w", ErrUnsupported)
	}
	area := make([]byte, h.DescSectors*sectorSize)
	if err := f.readAt(area, int64(h.DescOffset)*sectorSize); err != nil {
		return nil, err
	}
	desc, err := parseEmbedded(area, &h)
	if err != nil {
		return nil, err
	}
	t, dataEnd, err := loadTables(&f, &h, size)
	if err != nil {
		return nil, err
	}
	if !readOnly {
		for i, gt := range t {
			if gt == nil {
				return nil, fmt.Errorf("grain table %d not allocated (read-only only): %w", i, ErrUnsupported)
			}
		}
	}
	grain := h.GrainSectors * sectorSize
	e := &Extent{
		path:      path,
		readOnly:  readOnly,
		hdr:       h,
		geo:       geometryOf(h.Capacity, h.GrainSectors),
		grainSize: int64(grain),
		tables:    t,
		file:      f,
		next:      roundUp(max(uint64(size), h.Overhead*sectorSize, dataEnd*sectorSize), grain),
		dirty:     map[int64]struct{}{},
		desc:      desc,
	}
	return e, nil
}

// openFile opens path, retrying on EINTR.
func openFile(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags, 0)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}
