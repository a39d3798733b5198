package engine

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
	"github.com/extrasphere/extrasphere/internal/job"
)

// Native copy tuning: chunks of copyChunk bytes (at most the device's
// MaxPayload) moved by copyWorkers goroutines.
const (
	copyChunk   = 1 << 20
	copyWorkers = 4
)

// chunkSize is the copy unit for dev: copyChunk bounded by MaxPayload and
// a multiple of MinBlock.
func chunkSize(c blockdev.Caps) int64 {
	n := int64(copyChunk)
	if c.MaxPayload > 0 && int64(c.MaxPayload) < n {
		n = int64(c.MaxPayload)
	}
	if mb := int64(c.MinBlock); mb > 1 {
		n = max(n/mb*mb, mb)
	}
	return n
}

// copyIn copies srcSize bytes of a raw file into dev, which reads as
// zeros: holes of the source are skipped with SEEK_DATA/SEEK_HOLE and
// all-zero chunks are not written. A source shorter than a block is
// padded with zeros. Ends with a Flush.
func copyIn(ctx context.Context, dev blockdev.Device, src *os.File, srcSize int64, j *job.Job) error {
	caps := dev.Caps()
	size := dev.Size()
	chunk := chunkSize(caps)
	spans := alignSpans(dataSpans(src, min(srcSize, size)), int64(max(caps.MinBlock, 1)), size)
	pieces := chunks(spans, chunk)

	pool := sync.Pool{New: func() any { b := make([]byte, chunk); return &b }}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(copyWorkers)
	var pos int64
	for _, p := range pieces {
		if gctx.Err() != nil {
			break
		}
		j.Add(p.Off - pos) // the hole before this piece
		pos = p.Off + p.Len
		g.Go(func() error {
			bp := pool.Get().(*[]byte)
			defer pool.Put(bp)
			b := (*bp)[:p.Len]
			n, err := src.ReadAt(b, p.Off)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read source at %d: %w", p.Off, err)
			}
			clear(b[n:])
			if !blockdev.IsZero(b) {
				if err := dev.WriteAt(gctx, b, p.Off, 0); err != nil {
					return fmt.Errorf("write volume at %d: %w", p.Off, err)
				}
			}
			j.Add(p.Len)
			return nil
		})
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	if err := dev.Flush(ctx); err != nil {
		return fmt.Errorf("flush volume: %w", err)
	}
	return nil
}

// copyOut writes dev to a new sparse raw file at path: the file is
// truncated to the device size, ranges BlockStatus reports as zero are
// skipped, and all-zero chunks are not written. The file is fsynced and
// its directory too.
func copyOut(ctx context.Context, dev blockdev.Device, path string, j *job.Job) (err error) {
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
	caps := dev.Caps()
	pieces := chunks(deviceDataSpans(ctx, dev, size), chunkSize(caps))

	pool := sync.Pool{New: func() any { b := make([]byte, chunkSize(caps)); return &b }}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(copyWorkers)
	var pos int64
	for _, p := range pieces {
		if gctx.Err() != nil {
			break
		}
		j.Add(p.Off - pos)
		pos = p.Off + p.Len
		g.Go(func() error {
			bp := pool.Get().(*[]byte)
			defer pool.Put(bp)
			b := (*bp)[:p.Len]
			if err := dev.ReadAt(gctx, b, p.Off); err != nil {
				return fmt.Errorf("read volume at %d: %w", p.Off, err)
			}
			if !blockdev.IsZero(b) {
				if _, err := f.WriteAt(b, p.Off); err != nil {
					return fmt.Errorf("write %s at %d: %w", path, p.Off, err)
				}
			}
			j.Add(p.Len)
			return nil
		})
	}
	werr := g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if werr != nil {
		return werr
	}
	// gofail: var engineExportBeforeFsync struct{}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return datastore.SyncDir(filepath.Dir(path))
}

// statusChunk bounds one BlockStatus request.
const statusChunk = 1 << 30

// deviceDataSpans lists the ranges of dev that may hold non-zero data
// according to base:allocation. Without that context, or when it fails,
// the rest of the device counts as data (zero chunks are still skipped
// after reading).
func deviceDataSpans(ctx context.Context, dev blockdev.Device, size int64) []blockdev.Range {
	if !slices.Contains(dev.Caps().MetaContexts, blockdev.MetaBaseAllocation) {
		return []blockdev.Range{{Off: 0, Len: size}}
	}
	var out []blockdev.Range
	add := func(off, n int64) {
		if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == off {
			out[k-1].Len += n
			return
		}
		out = append(out, blockdev.Range{Off: off, Len: n})
	}
	for off := int64(0); off < size; {
		exts, err := dev.BlockStatus(ctx, blockdev.MetaBaseAllocation, off, min(size-off, statusChunk))
		if err != nil || len(exts) == 0 {
			add(off, size-off)
			break
		}
		for _, x := range exts {
			if x.Length <= 0 || off >= size {
				break
			}
			n := min(x.Length, size-off)
			if x.Flags&blockdev.StateZero == 0 {
				add(off, n)
			}
			off += n
		}
		if exts[0].Length <= 0 { // a broken reply: do not loop forever
			add(off, size-off)
			break
		}
	}
	return out
}
