package flat

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sys/unix"
)

// ReadAt fills p from the page cache (pread). Any off and length.
func (d *Device) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := d.acquire(ctx, "read", off, int64(len(p))); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	for len(p) > 0 {
		n, err := d.sys.pread(d.fd, p, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return d.mapErr("read", err)
		}
		if n == 0 {
			return fmt.Errorf("read %s at %d: %w", d.path, off, io.ErrUnexpectedEOF)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// WriteAt writes p into the page cache (pwrite). With FUA the range is
// durable on return: pwrite, then fdatasync. (Not pwritev2 with
// RWF_DSYNC: its error does not say whether the write failed, with
// nothing written, or the sync, which may have reported and consumed a
// write-back error of earlier writes; ENOSPC must stay a plain error the
// guest recovers from, a failed sync must stay sticky.) Flags other than
// FUA are ignored here; the checked device reports them. Writes enter the
// kernel maxKernelWriters at a time, in arrival order; the others wait
// here, cancellably.
func (d *Device) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := d.acquireWrite(ctx, "write", off, int64(len(p))); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if len(p) == 0 {
		return nil
	}
	select {
	case d.writers <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("write %s: %w", d.path, ctx.Err())
	}
	err := d.writeAll(d.sys.pwrite, p, off)
	<-d.writers
	if err == nil && flags&blockdev.FUA != 0 {
		err = d.datasync("write")
	}
	return err
}

func (d *Device) writeAll(pwrite func(int, []byte, int64) (int, error), p []byte, off int64) error {
	for len(p) > 0 {
		n, err := pwrite(d.fd, p, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return d.mapErr("write", err)
		}
		if n == 0 {
			return fmt.Errorf("write %s at %d: %w", d.path, off, io.ErrShortWrite)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// Flush makes every completed write durable (fdatasync).
func (d *Device) Flush(ctx context.Context) error {
	if err := d.acquire(ctx, "flush", 0, 0); err != nil {
		return err
	}
	defer d.mu.RUnlock()
	return d.datasync("flush")
}
