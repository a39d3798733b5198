package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/datastore"
)

// Native copy tuning: chunks of copyChunk bytes (at most the device's
// MaxPayload) moved by copyWorkers goroutines.
const (
	copyChunk   = 1 << 20
	copyWorkers = 4
)

// ChunkSize is the copy unit for dev: copyChunk bounded by MaxPayload and
// a multiple of MinBlock.
func ChunkSize(c blockdev.Caps) int64 {
	n := int64(copyChunk)
	if c.MaxPayload > 0 && int64(c.MaxPayload) < n {
		n = int64(c.MaxPayload)
	}
	if mb := int64(c.MinBlock); mb > 1 {
		n = max(n/mb*mb, mb)
	}
	return n
}

// CopyIn copies srcSize bytes of a raw file into dev, which reads as
// zeros: holes of the source are skipped with SEEK_DATA/SEEK_HOLE and
// all-zero chunks are not written. A source shorter than a block is
// padded with zeros. progress gets the bytes done since its last call
// (holes included; it may be nil). Ends with a Flush.
func CopyIn(ctx context.Context, dev blockdev.Device, src *os.File, srcSize int64, progress func(n int64)) error {
	caps := dev.Caps()
	size := dev.Size()
	spans := alignSpans(dataSpans(src, min(srcSize, size)), int64(max(caps.MinBlock, 1)), size)
	err := copyPlan{
		size:  size,
		spans: rangesOf(spans),
		chunk: ChunkSize(caps),
		read: func(_ context.Context, b []byte, off int64) error {
			n, err := src.ReadAt(b, off)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read source at %d: %w", off, err)
			}
			clear(b[n:])
			return nil
		},
		write: func(ctx context.Context, b []byte, off int64) error {
			if err := dev.WriteAt(ctx, b, off, 0); err != nil {
				return fmt.Errorf("write volume at %d: %w", off, err)
			}
			return nil
		},
		progress: progress,
	}.run(ctx)
	if err != nil {
		return err
	}
	if err := dev.Flush(ctx); err != nil {
		return fmt.Errorf("flush volume: %w", err)
	}
	return nil
}

// CopyOut writes dev to a new sparse raw file at path: the file is
// truncated to the device size, ranges BlockStatus reports as zero are
// skipped, and all-zero chunks are not written. The file is fsynced and
// its directory too. On an error the file is left for the caller to
// remove. progress is as for CopyIn.
func CopyOut(ctx context.Context, dev blockdev.Device, path string, progress func(n int64)) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close() // the caller removes the file
		}
	}()
	size := dev.Size()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	err = copyPlan{
		size:  size,
		spans: allocatedSpans(dev, size, true),
		chunk: ChunkSize(dev.Caps()),
		read: func(ctx context.Context, b []byte, off int64) error {
			if err := dev.ReadAt(ctx, b, off); err != nil {
				return fmt.Errorf("read volume at %d: %w", off, err)
			}
			return nil
		},
		write: func(_ context.Context, b []byte, off int64) error {
			if _, err := f.WriteAt(b, off); err != nil {
				return fmt.Errorf("write %s at %d: %w", path, off, err)
			}
			return nil
		},
		progress: progress,
	}.run(ctx)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return datastore.SyncDir(filepath.Dir(path))
}

// CopyDevice copies src into dst (same size; dst reads as zeros where it
// was not written). Ranges src reports as holes or zeros, and all-zero
// chunks, are not written; a failed BlockStatus fails the copy. rate,
// when > 0, caps the bytes read per second (the --rate of a migration);
// progress is as for CopyIn. Ends with a Flush of dst.
func CopyDevice(ctx context.Context, dst, src blockdev.Device, rate int64, progress func(n int64)) error {
	size := src.Size()
	if dst.Size() != size {
		return fmt.Errorf("copy: source is %d bytes, target %d", size, dst.Size())
	}
	err := copyPlan{
		size:  size,
		spans: allocatedSpans(src, size, false),
		chunk: ChunkSize(dst.Caps()),
		read: func(ctx context.Context, b []byte, off int64) error {
			if err := src.ReadAt(ctx, b, off); err != nil {
				return fmt.Errorf("copy: read at %d: %w", off, err)
			}
			return nil
		},
		write: func(ctx context.Context, b []byte, off int64) error {
			if err := dst.WriteAt(ctx, b, off, 0); err != nil {
				return fmt.Errorf("copy: write at %d: %w", off, err)
			}
			return nil
		},
		rate:     rate,
		progress: progress,
	}.run(ctx)
	if err != nil {
		return err
	}
	return dst.Flush(ctx)
}

// copyPlan is one copy through the one copy loop (run): what to read, in
// which ranges, and where to write it.
type copyPlan struct {
	size     int64                                                            // bytes of the source; progress ends there
	spans    func(ctx context.Context, yield func(blockdev.Range) bool) error // ascending ranges that may hold data
	chunk    int64                                                            // bytes per piece (pieces start on multiples of it)
	read     func(ctx context.Context, b []byte, off int64) error
	write    func(ctx context.Context, b []byte, off int64) error
	rate     int64       // bytes read per second; 0: unlimited
	progress func(int64) // bytes done since the last call, holes included; may be nil
}

// run copies every span in pieces with copyWorkers goroutines; a piece
// read as all zero is not written (the target reads as zeros there).
// Cancelling ctx stops it: pieces not started are not, it waits for those
// running, and returns ctx's error. Otherwise it returns the first error
// of a span listing, a read or a write.
func (p copyPlan) run(ctx context.Context) error {
	pool := sync.Pool{New: func() any { b := make([]byte, p.chunk); return &b }}
	lim := NewLimiter(p.rate)
	report := func(n int64) {
		if p.progress != nil && n > 0 {
			p.progress(n)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(copyWorkers)
	var pos int64 // the end of the last piece started
	serr := p.spans(gctx, func(r blockdev.Range) bool {
		for _, piece := range chunks([]blockdev.Range{r}, p.chunk) {
			if gctx.Err() != nil {
				return false
			}
			report(piece.Off - pos) // the hole before this piece
			pos = piece.Off + piece.Len
			g.Go(func() error {
				bp := pool.Get().(*[]byte)
				defer pool.Put(bp)
				b := (*bp)[:piece.Len]
				if err := lim.Wait(gctx, piece.Len); err != nil {
					return err
				}
				if err := p.read(gctx, b, piece.Off); err != nil {
					return err
				}
				if !blockdev.IsZero(b) {
					if err := p.write(gctx, b, piece.Off); err != nil {
						return err
					}
				}
				report(piece.Len)
				return nil
			})
		}
		return true
	})
	werr := g.Wait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case werr != nil:
		return werr
	case serr != nil:
		return serr
	}
	report(p.size - pos) // the hole after the last piece
	return nil
}

// rangesOf lists spans as a copyPlan's spans.
func rangesOf(spans []blockdev.Range) func(context.Context, func(blockdev.Range) bool) error {
	return func(_ context.Context, yield func(blockdev.Range) bool) error {
		for _, r := range spans {
			if !yield(r) {
				return nil
			}
		}
		return nil
	}
}

// statusChunk bounds one BlockStatus request.
const statusChunk = 1 << 30

// allocatedSpans lists, as a copyPlan's spans, the ranges of dev below
// size that may hold non-zero data according to base:allocation, asking
// statusChunk bytes at a time. Without that context, the whole device
// counts as data (zero chunks are still skipped after reading). When
// BlockStatus fails, lenient counts the rest of the device as data; else
// the listing fails.
func allocatedSpans(dev blockdev.Device, size int64, lenient bool) func(context.Context, func(blockdev.Range) bool) error {
	return func(ctx context.Context, yield func(blockdev.Range) bool) error {
		if !slices.Contains(dev.Caps().MetaContexts, blockdev.MetaBaseAllocation) {
			yield(blockdev.Range{Off: 0, Len: size})
			return nil
		}
		var run blockdev.Range // data not yet yielded, merged while contiguous
		emit := func() bool {
			if run.Len == 0 {
				return true
			}
			ok := yield(run)
			run = blockdev.Range{}
			return ok
		}
		add := func(off, n int64) bool {
			if run.Len > 0 && run.Off+run.Len == off {
				run.Len += n
				return true
			}
			if !emit() {
				return false
			}
			run = blockdev.Range{Off: off, Len: n}
			return true
		}
		for off := int64(0); off < size; {
			exts, err := dev.BlockStatus(ctx, blockdev.MetaBaseAllocation, off, min(size-off, statusChunk))
			if err == nil && len(exts) == 0 {
				err = errors.New("an empty reply")
			}
			if err == nil && exts[0].Length <= 0 {
				err = errors.New("a broken reply") // do not loop forever
			}
			if err != nil {
				if !lenient {
					return fmt.Errorf("copy: block status at %d: %w", off, err)
				}
				add(off, size-off)
				break
			}
			for _, x := range exts {
				if x.Length <= 0 || off >= size {
					break
				}
				n := min(x.Length, size-off)
				if x.Flags&blockdev.StateZero == 0 && !add(off, n) {
					return nil
				}
				off += n
			}
		}
		emit()
		return nil
	}
}
