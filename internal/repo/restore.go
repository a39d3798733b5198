package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Workers  int                     // parallel fetches; default 4
	Progress func(done, total int64) // called serially as chunks complete
	// ZeroFill writes zero chunks too. Without it they are skipped and
	// dst must already read as zeros there (a new sparse file, a freshly
	// created volume).
	ZeroFill bool
}

// restoreSegment is the unit of a restore worker: this many bytes of the
// volume are fetched together (coalesced per pack) and written with one
// WriteAt per run of data chunks (fewer, larger writes measured faster
// than one per chunk straight from the fetched packs).
const restoreSegment = 8 << 20

// Restore writes volume of backup m to dst at the volume's offsets. It
// takes a read lock on the backup (prune may run, but not delete it; a
// chunk it moves meanwhile is looked up again). Every chunk is verified
// before it is written; on any error (a *ChunkError for a missing or
// corrupt chunk) dst is incomplete. dst is not resized: a caller
// restoring into a file sets its size first. dst.WriteAt is called from
// several goroutines at once, for distinct ranges.
func (r *Repo) Restore(ctx context.Context, m *Manifest, volume string, dst io.WriterAt, opts RestoreOptions) error {
	v, err := m.Volume(volume)
	if err != nil {
		return err
	}
	l, err := r.lockBackupForRead(ctx, m.ID, "restore")
	if err != nil {
		return fmt.Errorf("restore %s of backup %s: %w", volume, m.ID, err)
	}
	defer l.release(ctx)
	if _, err := r.refreshIndex(ctx); err != nil {
		return fmt.Errorf("restore %s of backup %s: %w", volume, m.ID, err)
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	per := max(1, restoreSegment/v.ChunkSize)
	segments := (len(v.Chunks) + per - 1) / per
	report := serialProgress(opts.Progress, v.Size)
	var done atomic.Int64
	bufs := sync.Pool{New: func() any { b := make([]byte, per*v.ChunkSize); return &b }}
	err = forEach(ctx, segments, opts.Workers, func(ctx context.Context, s int) error {
		first, last := s*per, min((s+1)*per, len(v.Chunks))
		buf := bufs.Get().(*[]byte)
		defer bufs.Put(buf)
		n, err := r.restoreSegment(ctx, m, v, first, last, *buf, dst, opts.ZeroFill)
		if err != nil {
			return err
		}
		report(done.Add(n))
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore %s of backup %s: %w", volume, m.ID, err)
	}
	if err := l.release(ctx); err != nil {
		return fmt.Errorf("restore %s of backup %s: %w", volume, m.ID, err)
	}
	return nil
}

// restoreSegment restores chunks [first, last) of v through buf and
// returns the volume bytes they cover.
func (r *Repo) restoreSegment(ctx context.Context, m *Manifest, v *Volume, first, last int, buf []byte,
	dst io.WriterAt, zeroFill bool) (int64, error) {
	cs := int64(v.ChunkSize)
	where := map[ID][]int{} // chunk id -> its indexes in the segment
	var ids []ID
	for i := first; i < last; i++ {
		id := v.Chunks[i]
		if id.IsNull() {
			continue
		}
		if _, ok := where[id]; !ok {
			ids = append(ids, id)
		}
		where[id] = append(where[id], i)
	}
	var lenErr map[ID]error
	fails, err := r.fetchChunks(ctx, ids, func(id ID, p []byte) error {
		for _, i := range where[id] {
			if len(p) != v.ChunkLen(i) {
				if lenErr == nil {
					lenErr = map[ID]error{}
				}
				lenErr[id] = fmt.Errorf("chunk of %d bytes where the volume has %d: %w", len(p), v.ChunkLen(i), ErrCorrupt)
				return nil
			}
			copy(buf[int64(i-first)*cs:], p)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for i := first; i < last && (len(fails) > 0 || len(lenErr) > 0); i++ {
		id := v.Chunks[i]
		e, ok := fails[id]
		if !ok {
			e, ok = lenErr[id]
		}
		if ok && !id.IsNull() {
			return 0, &ChunkError{Backup: m.ID, Volume: v.Name, Offset: int64(i) * cs, ID: id, Err: e}
		}
	}
	base := int64(first) * cs
	size := int64(last-first-1)*cs + int64(v.ChunkLen(last-1))
	if zeroFill {
		for i := first; i < last; i++ {
			if v.Chunks[i].IsNull() {
				clear(buf[int64(i-first)*cs : int64(i-first)*cs+int64(v.ChunkLen(i))])
			}
		}
		return size, writeAt(dst, buf[:size], base)
	}
	for i := first; i < last; {
		if v.Chunks[i].IsNull() {
			i++
			continue
		}
		j := i + 1
		for j < last && !v.Chunks[j].IsNull() {
			j++
		}
		off := int64(i-first) * cs
		end := int64(j-1-first)*cs + int64(v.ChunkLen(j-1))
		if err := writeAt(dst, buf[off:end], base+off); err != nil {
			return 0, err
		}
		i = j
	}
	return size, nil
}

func writeAt(dst io.WriterAt, p []byte, off int64) error {
	if _, err := dst.WriteAt(p, off); err != nil {
		return fmt.Errorf("write restored data at offset %d: %w", off, err)
	}
	return nil
}

// lockBackupForRead takes a read lock on backup id and then checks the
// manifest still exists (a prune may have forgotten it between the
// caller's Load and the lock).
func (r *Repo) lockBackupForRead(ctx context.Context, id, op string) (*heldLock, error) {
	l, err := r.lock(ctx, lockRead, op, []string{id})
	if err != nil {
		return nil, err
	}
	if _, err := r.b.Size(ctx, manifestKey(id)); err != nil {
		l.release(ctx)
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("backup %s was forgotten: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return l, nil
}
