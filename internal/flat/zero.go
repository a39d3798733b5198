package flat

import (
	"context"
	"errors"
	"fmt"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

const (
	punchHole = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	zeroRange = unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
)

// WriteZeroes makes [off, off+length) read as zeros. Without NoHole (and
// on a thin volume) it punches a hole; the kernel zeroes the partial
// blocks at the ends. With NoHole, or on a preallocated volume, it uses
// FALLOC_FL_ZERO_RANGE, which keeps the blocks allocated. Where the
// filesystem has neither it writes zeros, unless FastZero asks for
// ErrNotFast instead. FUA adds an fdatasync.
func (d *Device) WriteZeroes(ctx context.Context, off, length int64, flags blockdev.WriteFlags) error {
	if err := d.acquireWrite(ctx, "write zeroes", off, length); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if length == 0 {
		return nil
	}
	punch := flags&blockdev.NoHole == 0 && !d.prealloc
	if err := d.zero(off, length, punch, flags&blockdev.FastZero != 0); err != nil {
		return err
	}
	if flags&blockdev.FUA != 0 {
		return d.datasync("write zeroes")
	}
	return nil
}

func (d *Device) zero(off, length int64, punch, fast bool) error {
	if punch {
		err := d.fallocate(punchHole, off, length)
		if err == nil || !unsupported(err) {
			return err
		}
	}
	err := d.fallocate(zeroRange, off, length)
	if err == nil || !unsupported(err) {
		return err
	}
	if fast {
		return fmt.Errorf("write zeroes %s [%d, +%d): no fallocate here: %w", d.path, off, length, blockdev.ErrNotFast)
	}
	zeros := d.zeroBuf()
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if err := d.writeAll(d.sys.pwrite, zeros[:n], off); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// Trim punches holes over the whole filesystem blocks inside the range
// (partial blocks keep their data, which Trim allows). It is a no-op on a
// preallocated volume and where the filesystem cannot punch holes. FUA
// adds an fdatasync.
func (d *Device) Trim(ctx context.Context, off, length int64, flags blockdev.WriteFlags) error {
	if err := d.acquireWrite(ctx, "trim", off, length); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if d.prealloc {
		return nil
	}
	bs := d.blockSize
	start := off + (bs-off%bs)%bs
	end := (off + length) / bs * bs
	if end <= start {
		return nil
	}
	if err := d.fallocate(punchHole, start, end-start); err != nil {
		if unsupported(err) {
			return nil
		}
		return err
	}
	if flags&blockdev.FUA != 0 {
		return d.datasync("trim")
	}
	return nil
}

// fallocate calls fallocate(2), retrying on EINTR; the error keeps the
// errno (unsupported tests it) and names the file.
func (d *Device) fallocate(mode uint32, off, length int64) error {
	for {
		err := d.sys.fallocate(d.fd, mode, off, length)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return d.mapErr("fallocate", err)
		}
		return nil
	}
}
