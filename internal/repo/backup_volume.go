package repo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// plan decides, chunk by chunk, what runVolume must read: it fills
// vol.Chunks with the ids it can reuse from prev, then with null ids for
// the chunks zero marks (holes), and returns the indexes of the others.
// A chunk is reused when prev has the same chunk size and
// the same length there, no dirty range touches it, and its id is null or
// in a pack the repository still has (a chunk missing from the repository
// is read again, so an incremental backup also repairs what verify found
// missing).
func (b *Backup) plan(vol *Volume, opts VolumeOptions, zero []bool) (toRead []int, st BackupStats) {
	n := len(vol.Chunks)
	prev := opts.Prev
	reuse := prev != nil && opts.Dirty != nil && prev.ChunkSize == vol.ChunkSize && len(prev.Chunks) == prev.NumChunks()
	var dirty []bool
	if reuse {
		dirty = make([]bool, n)
		cs := int64(vol.ChunkSize)
		for _, d := range opts.Dirty {
			if d.Len == 0 || d.Off >= vol.Size {
				continue
			}
			end := vol.Size // clip without overflowing Off+Len
			if d.Len < vol.Size-d.Off {
				end = d.Off + d.Len
			}
			for i := d.Off / cs; i <= (end-1)/cs; i++ {
				dirty[i] = true
			}
		}
	}
	for i := range n {
		if reuse && i < len(prev.Chunks) && !dirty[i] && vol.ChunkLen(i) == prev.ChunkLen(i) {
			if id := prev.Chunks[i]; id.IsNull() || b.known(id) {
				vol.Chunks[i] = id
				st.ChunksReused++
				st.BytesReused += int64(vol.ChunkLen(i))
				continue
			}
		}
		if zero != nil && zero[i] {
			vol.Chunks[i] = ID{}
			st.ChunksZero++
			st.BytesZero += int64(vol.ChunkLen(i))
			continue
		}
		toRead = append(toRead, i)
	}
	return toRead, st
}

// holeChunks marks the chunks of vol that lie wholly inside the ranges
// zeros visits; nil when zeros is nil.
func holeChunks(ctx context.Context, vol *Volume, zeros func(context.Context, func(blockdev.Range)) error) ([]bool, error) {
	if zeros == nil {
		return nil, nil
	}
	zero := make([]bool, len(vol.Chunks))
	cs := int64(vol.ChunkSize)
	err := zeros(ctx, func(r blockdev.Range) {
		if r.Off < 0 || r.Len <= 0 || r.Off >= vol.Size {
			return
		}
		end := vol.Size // clip without overflowing Off+Len
		if r.Len < vol.Size-r.Off {
			end = r.Off + r.Len
		}
		first := (r.Off + cs - 1) / cs // the first chunk starting inside r
		for i := first; i < int64(len(zero)); i++ {
			chunkEnd := min((i+1)*cs, vol.Size) // the last chunk may be short
			if chunkEnd > end {
				break
			}
			zero[i] = true
		}
	})
	return zero, err
}

// runVolume backs up vol from src: plan, then the worker pipeline.
func (b *Backup) runVolume(ctx context.Context, vol *Volume, src Source, opts VolumeOptions) (BackupStats, error) {
	zero, err := holeChunks(ctx, vol, opts.Zeros)
	if err != nil {
		return BackupStats{}, fmt.Errorf("back up volume %s: allocation map: %w", vol.Name, err)
	}
	toRead, st := b.plan(vol, opts, zero)
	st.BytesTotal = vol.Size
	b.progress(st.BytesReused + st.BytesZero)
	var next atomic.Int64
	var mu sync.Mutex // guards st while workers merge into it
	g, gctx := errgroup.WithContext(ctx)
	for range min(b.workers, max(len(toRead), 1)) {
		g.Go(func() error {
			w := chunkWorker{b: b, vol: vol, src: src, buf: make([]byte, vol.ChunkSize)}
			err := w.run(gctx, toRead, &next)
			mu.Lock()
			st.add(w.st)
			mu.Unlock()
			return err
		})
	}
	err = g.Wait()
	if cerr := ctx.Err(); cerr != nil {
		err = cerr // cancelled: say so, whatever the workers saw first
	}
	if err != nil {
		return st, fmt.Errorf("back up volume %s: %w", vol.Name, err)
	}
	return st, nil
}

// chunkWorker is one goroutine of the pipeline with its own buffers.
type chunkWorker struct {
	b       *Backup
	vol     *Volume
	src     Source
	buf     []byte // one chunk of plaintext
	scratch []byte // compressed form
	out     []byte // the object
	st      BackupStats
}

func (w *chunkWorker) run(ctx context.Context, toRead []int, next *atomic.Int64) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := next.Add(1) - 1
		if k >= int64(len(toRead)) {
			return nil
		}
		i := toRead[k]
		off := int64(i) * int64(w.vol.ChunkSize)
		p := w.buf[:w.vol.ChunkLen(i)]
		if err := w.src.ReadAt(ctx, p, off); err != nil {
			return fmt.Errorf("read offset %d: %w", off, err)
		}
		w.st.ChunksRead++
		w.st.BytesRead += int64(len(p))
		id, err := w.store(ctx, p)
		if err != nil {
			return fmt.Errorf("chunk at offset %d: %w", off, err)
		}
		w.vol.Chunks[i] = id // each index is written by one worker only
		w.b.progress(int64(len(p)))
	}
}

// store classifies one chunk (zero, known, new) and packs a new one.
func (w *chunkWorker) store(ctx context.Context, p []byte) (ID, error) {
	r := w.b.r
	if blockdev.IsZero(p) {
		w.st.ChunksZero++
		w.st.BytesZero += int64(len(p))
		return ID{}, nil
	}
	id := r.codec.chunkID(p)
	if !w.b.claim(id) {
		w.st.ChunksDeduped++
		w.st.BytesDeduped += int64(len(p))
		return id, nil
	}
	w.out = r.codec.encode(w.out[:0], magicChunk, chunkKey(id), p, true, &w.scratch)
	if err := w.b.packer.add(ctx, id, w.out); err != nil {
		return ID{}, err
	}
	w.st.ChunksNew++
	w.st.BytesNew += int64(len(p))
	w.st.BytesStored += int64(len(w.out))
	return id, nil
}
