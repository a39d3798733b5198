package fsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// CopyData copies the data of src (its ranges SEEK_DATA finds, in
// [0, size)) into dst at the same offsets, in pieces of at most chunk
// bytes, with copy_file_range: the kernel moves the pages (or shares the
// blocks, on filesystems with reflinks), so nothing passes through user
// space. Holes are not written, so dst must read as zeros there (new, or
// sparse of the right size). Before each piece, wait (if set) may block
// for a rate limit; progress (if set) gets the bytes done, holes
// included. dst is not synced. Where copy_file_range is refused (across
// filesystems on older kernels, some FUSE and NFS mounts) it falls back to
// pread and pwrite.
func CopyData(ctx context.Context, dst, src *os.File, size, chunk int64, wait func(context.Context, int64) error, progress func(int64)) error {
	if chunk <= 0 {
		chunk = 8 << 20
	}
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	var buf []byte // the fallback's, allocated on first use
	report := func(n int64) {
		if progress != nil {
			progress(n)
		}
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || (err == nil && data >= size) {
			report(size - off) // only a hole is left
			return nil
		}
		if err != nil {
			return fmt.Errorf("copy %s: seek data at %d: %w", src.Name(), off, err)
		}
		report(data - off)
		end, err := unix.Seek(sfd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("copy %s: seek hole at %d: %w", src.Name(), data, err)
		}
		end = min(end, size)
		for p := data; p < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(chunk, end-p)
			if wait != nil {
				if err := wait(ctx, n); err != nil {
					return err
				}
			}
			k, err := copyRange(dfd, sfd, p, n)
			if err != nil && buf == nil && fallbackCopy(err) {
				buf = make([]byte, 1<<20)
			}
			if buf != nil {
				k, err = copyRangeRW(dst, src, p, n, buf)
			}
			if err != nil {
				return fmt.Errorf("copy %s to %s at %d: %w", src.Name(), dst.Name(), p, err)
			}
			p += k
			report(k)
		}
		off = end
	}
	return nil
}

// copyRange copies n bytes at off with copy_file_range; it returns 0 and
// the error when the call is refused outright.
func copyRange(dfd, sfd int, off, n int64) (int64, error) {
	var done int64
	for done < n {
		ro, wo := off+done, off+done
		k, err := unix.CopyFileRange(sfd, &ro, dfd, &wo, int(n-done), 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, err
		}
		if k == 0 {
			return done, io.ErrUnexpectedEOF // the source shrank
		}
		done += int64(k)
	}
	return done, nil
}

func fallbackCopy(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) ||
		errors.Is(err, unix.EINVAL)
}

func copyRangeRW(dst, src *os.File, off, n int64, buf []byte) (int64, error) {
	var done int64
	for done < n {
		b := buf[:min(int64(len(buf)), n-done)]
		k, err := src.ReadAt(b, off+done)
		if k > 0 {
			if _, werr := dst.WriteAt(b[:k], off+done); werr != nil {
				return done, werr
			}
			done += int64(k)
		}
		if err != nil {
			if errors.Is(err, io.EOF) && done == n {
				break
			}
			return done, err
		}
	}
	return done, nil
}
