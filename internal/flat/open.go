package flat

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/failpoint"
	"github.com/extrasphere/extrasphere/internal/vmdk"
	"golang.org/x/sys/unix"
)

// Options tune Open.
type Options struct {
	// ReadOnly opens the flat file read-only. A descriptor with
	// ddb.extrasphere.readOnly = "true" is read-only whatever this says.
	ReadOnly bool

	// Failpoints arms FailpointDataSync (crash and fault tests); nil
	// arms none.
	Failpoints *failpoint.Set
}

// Open opens the volume whose descriptor is descPath. The descriptor must
// name exactly one FLAT extent at offset 0 (ErrNotFlat) whose file is at
// least as large as the extent (ErrShortFlat).
func Open(descPath string, opts Options) (*Device, error) {
	desc, err := ReadDescriptor(descPath)
	if err != nil {
		return nil, err
	}
	if len(desc.Extents) != 1 || desc.Extents[0].Type != vmdk.TypeFlat || desc.Extents[0].Offset != 0 ||
		desc.Extents[0].Access == vmdk.AccessNoAccess {
		return nil, fmt.Errorf("open volume %s: %w", descPath, ErrNotFlat)
	}
	readOnly, err := ddbBool(desc, vmdk.DDBExtrasphereReadOnly)
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", descPath, err)
	}
	prealloc, err := ddbBool(desc, vmdk.DDBExtraspherePreAlloc)
	if err != nil {
		return nil, fmt.Errorf("open volume %s: %w", descPath, err)
	}
	readOnly = readOnly || opts.ReadOnly || desc.Extents[0].Access == vmdk.AccessRDONLY

	path := desc.Extents[0].File
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(descPath), path)
	}
	d, err := openExtent(path, desc.Size(), readOnly, prealloc)
	if err != nil {
		return nil, err
	}
	d.fp = opts.Failpoints
	return d, nil
}

// OpenRaw opens a raw file of at least size bytes as a device of size
// bytes, with no descriptor: a mirror's file:// replica.
func OpenRaw(path string, size int64) (*Device, error) {
	return openExtent(path, size, false, false)
}

// openExtent opens the raw extent at path as a device of size bytes.
func openExtent(path string, size int64, readOnly, prealloc bool) (*Device, error) {
	flags := unix.O_RDWR
	if readOnly {
		flags = unix.O_RDONLY
	}
	fd, err := openFile(path, flags|unix.O_CLOEXEC)
	if errors.Is(err, unix.EISDIR) {
		err = fmt.Errorf("%w: %w", ErrNotRegular, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open flat extent %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat flat extent %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = ErrNotRegular
	case st.Size < size:
		err = fmt.Errorf("%d bytes, extent %d: %w", st.Size, size, ErrShortFlat)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open flat extent %s: %w", path, err)
	}
	d := &Device{
		path:      path,
		size:      size,
		readOnly:  readOnly,
		prealloc:  prealloc,
		blockSize: fsBlock(st.Blksize),
		sys:       realSys(),
		fd:        fd,
		writers:   make(chan struct{}, maxKernelWriters),
	}
	d.caps = capsFor(readOnly)
	return d, nil
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

func capsFor(readOnly bool) blockdev.Caps {
	c := blockdev.Caps{
		Flush:        true,
		FUA:          true,
		Trim:         true,
		Zero:         true,
		FastZero:     true, // fallocate on ext4/xfs/tmpfs; ErrNotFast where it is missing
		MultiConn:    true, // one file, one page cache: a Flush covers every handle
		Cache:        true,
		MinBlock:     1,
		PrefBlock:    prefBlock,
		MaxPayload:   maxPayload,
		MetaContexts: []string{blockdev.MetaBaseAllocation},
	}
	if readOnly {
		c.ReadOnly = true
		c.FUA, c.Trim, c.Zero, c.FastZero = false, false, false, false // nothing to write
	}
	return c
}

// fsBlock is the filesystem block from st_blksize, 4096 if it looks wrong.
func fsBlock(b int64) int64 {
	if b < 512 || b > 1<<20 || b&(b-1) != 0 {
		return 4096
	}
	return b
}

// ReadDescriptor reads and parses a volume descriptor.
func ReadDescriptor(descPath string) (*vmdk.Descriptor, error) {
	f, err := os.Open(descPath)
	if err != nil {
		return nil, fmt.Errorf("read descriptor %s: %w", descPath, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, vmdk.MaxDescriptorSize+1))
	if err != nil {
		return nil, fmt.Errorf("read descriptor %s: %w", descPath, err)
	}
	desc, err := vmdk.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse descriptor %s: %w", descPath, err)
	}
	return desc, nil
}

// ddbBool reads an optional "true"/"false" disk database key.
func ddbBool(desc *vmdk.Descriptor, key string) (bool, error) {
	v, ok := desc.DDB.Get(key)
	switch {
	case !ok || strings.EqualFold(v, "false"):
		return false, nil
	case strings.EqualFold(v, "true"):
		return true, nil
	}
	return false, fmt.Errorf("%s = %q: %w", key, v, ErrBadOption)
}
