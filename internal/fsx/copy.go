package fsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CopyData copies the data of src (its ranges SEEK_DATA finds, in
// [0, size)) into dst at the same offsets, in pieces of at most chunk
// bytes, with copy_file_range: the kernel moves the pages (or shares the
// blocks, on filesystems with reflinks), so nothing passes through user
// space. Holes are not written, so dst must read as zeros there (new, or
// sparse of the right size). Before each piece, wait (if set) may block
// for a rate limit; progress (if set) gets the bytes done, holes
// included. dst is not synced. When dst is open with O_DIRECT (see
// OpenDirect) the copy reads into aligned buffers and writes around the
// page cache instead: a copy of gigabytes then does not fill the cache
// with dirty pages, which would make the kernel throttle every other
// writer (the VMs) until they are written back. Where copy_file_range is refused (across
// filesystems on older kernels, some FUSE and NFS mounts) it falls back to
// pread and pwrite.
func CopyData(ctx context.Context, dst, src *os.File, size, chunk int64, wait func(context.Context, int64) error, progress func(int64)) error {
	if chunk <= 0 {
		chunk = 8 << 20
	}
	sfd, dfd := int(src.Fd()), int(dst.Fd())
	var buf []byte    // the fallback's, allocated on first use
	var mu sync.Mutex // serialises progress for the direct writers
	report := func(n int64) {
		if progress != nil {
			mu.Lock()
			progress(n)
			mu.Unlock()
		}
	}
	var dw *directWriters
	if isDirect(dfd) {
		// copy_file_range goes through the page cache; O_DIRECT wants
		// aligned buffers, and several writes in flight to keep the disk
		// busy: read and write ourselves.
		dw = newDirectWriters(ctx, dst, src, int(chunk), report)
		defer dw.stop()
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || (err == nil && data >= size) {
			report(size - off) // only a hole is left
			break
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
			if dw != nil {
				if err := dw.submit(p, n); err != nil {
					return fmt.Errorf("copy %s to %s: %w", src.Name(), dst.Name(), err)
				}
				p += n
				continue
			}
			var k int64
			var err error
			if buf == nil {
				k, err = copyRange(dfd, sfd, p, n)
				if err != nil && fallbackCopy(err) {
					buf = make([]byte, 1<<20)
				}
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
	if dw != nil {
		if err := dw.wait(); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src.Name(), dst.Name(), err)
		}
		// A last piece not block aligned was written rounded up.
		if fi, err := dst.Stat(); err == nil && fi.Size() > size {
			return dst.Truncate(size)
		}
	}
	return ctx.Err()
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

// OpenDirect opens path for writing with O_DIRECT, or, where the
// filesystem refuses it (tmpfs, some FUSE), without.
func OpenDirect(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return os.OpenFile(path, os.O_WRONLY, 0)
	}
	return f, err
}

func isDirect(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_DIRECT != 0
}

// directAlign is the alignment O_DIRECT needs for buffers, offsets and
// lengths on the filesystems we use (the logical block size is at most
// this).
const directAlign = 4096

func alignedBuf(n int) []byte {
	n = (n + directAlign - 1) / directAlign * directAlign
	b := make([]byte, n+directAlign)
	off := directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)
	if off == directAlign {
		off = 0
	}
	return b[off : off+n]
}

// directWriters copies pieces into an O_DIRECT destination with a few
// writes in flight, each worker with its own aligned buffer.
type directWriters struct {
	ctx      context.Context
	dst, src *os.File
	report   func(int64)
	work     chan [2]int64 // offset, length
	wg       sync.WaitGroup
	errOnce  sync.Once
	err      error
	failed   chan struct{} // closed on the first error
}

const directWorkers = 4

func newDirectWriters(ctx context.Context, dst, src *os.File, chunk int, report func(int64)) *directWriters {
	work := make(chan [2]int64)
	w := &directWriters{ctx: ctx, dst: dst, src: src, report: report, work: work, failed: make(chan struct{})}
	for range directWorkers {
		buf := alignedBuf(chunk)
		w.wg.Go(func() {
			// work, not w.work: stop sets the field to nil, maybe before
			// this goroutine first reads it.
			for piece := range work {
				if err := copyPieceDirect(w.dst, w.src, piece[0], piece[1], buf); err != nil {
					w.fail(fmt.Errorf("at %d: %w", piece[0], err))
					continue
				}
				w.report(piece[1])
			}
		})
	}
	return w
}

func (w *directWriters) fail(err error) {
	w.errOnce.Do(func() { w.err = err; close(w.failed) })
}

// submit hands a piece (at most a chunk) to a worker, waiting for one.
func (w *directWriters) submit(off, n int64) error {
	select {
	case w.work <- [2]int64{off, n}:
		return nil
	case <-w.failed:
		return w.err
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// wait lets the workers finish and returns the first error.
func (w *directWriters) wait() error {
	w.stop()
	select {
	case <-w.failed:
		return w.err
	default:
		return nil
	}
}

// stop closes the work queue and waits for the workers. Only the
// goroutine that submits calls it.
func (w *directWriters) stop() {
	if w.work != nil {
		close(w.work)
		w.work = nil
		w.wg.Wait()
	}
}

// copyPieceDirect copies [off, off+n) through buf (aligned, at least n
// bytes rounded up) into dst, open with O_DIRECT. A piece that is not
// block aligned at its end (the end of a file whose size is not a
// multiple of directAlign) is written rounded up with zeros; CopyData cuts
// the file back to size.
func copyPieceDirect(dst, src *os.File, off, n int64, buf []byte) error {
	b := buf[:n]
	if _, err := src.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	w := (n + directAlign - 1) / directAlign * directAlign
	clear(buf[n:w])
	_, err := dst.WriteAt(buf[:w], off)
	return err
}
