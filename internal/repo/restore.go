package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// readChunk fetches chunk id, checks it (crc, GCM tag, decompression,
// re-hash to id) and returns its plaintext, which may alias dst. Errors
// wrap ErrMissingChunk, ErrCorrupt or a backend error.
func (r *Repo) readChunk(ctx context.Context, id ID, dst []byte) ([]byte, error) {
	key := chunkKey(id)
	obj, err := r.b.Get(ctx, key)
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("object %s: %w", key, ErrMissingChunk)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	p, err := r.codec.decode(magicChunk, key, obj, maxChunkSize, dst)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", key, err)
	}
	if r.codec.chunkID(p) != id {
		return nil, fmt.Errorf("object %s: content does not hash to its id: %w", key, ErrCorrupt)
	}
	return p, nil
}

// volumeChunk reads chunk i of v in backup m and checks its length; errors
// are *ChunkError.
func (r *Repo) volumeChunk(ctx context.Context, m *Manifest, v *Volume, i int, dst []byte) ([]byte, error) {
	id := v.Chunks[i]
	p, err := r.readChunk(ctx, id, dst)
	if err == nil && len(p) != v.ChunkLen(i) {
		err = fmt.Errorf("chunk of %d bytes where the volume has %d: %w", len(p), v.ChunkLen(i), ErrCorrupt)
	}
	if err != nil {
		return nil, &ChunkError{Backup: m.ID, Volume: v.Name, Offset: int64(i) * int64(v.ChunkSize), ID: id, Err: err}
	}
	return p, nil
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	Workers  int                     // parallel fetches; default 4
	Progress func(done, total int64) // called serially as chunks complete
	// ZeroFill writes zero chunks too. Without it they are skipped and
	// dst must already read as zeros there (a new sparse file, a freshly
	// created volume).
	ZeroFill bool
}

// Restore writes volume of backup m to dst at the volume's offsets. It
// takes a read lock on the backup (prune may run, but not delete it).
// Every chunk is verified before it is written; on any error (a
// *ChunkError for a missing or corrupt chunk) dst is incomplete. dst is
// not resized: a caller restoring into a file sets its size first.
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
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	var (
		next, done atomic.Int64
		zeros      []byte
	)
	if opts.ZeroFill {
		zeros = make([]byte, v.ChunkSize)
	}
	report := serialProgress(opts.Progress, v.Size)
	g, gctx := errgroup.WithContext(ctx)
	for range min(opts.Workers, max(len(v.Chunks), 1)) {
		g.Go(func() error {
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(v.Chunks) || gctx.Err() != nil {
					return gctx.Err()
				}
				off, n := int64(i)*int64(v.ChunkSize), v.ChunkLen(i)
				p := zeros[:min(n, len(zeros))]
				if !v.Chunks[i].IsNull() {
					if buf == nil {
						buf = make([]byte, 0, v.ChunkSize)
					}
					var err error
					if p, err = r.volumeChunk(gctx, m, v, i, buf); err != nil {
						return err
					}
				}
				if len(p) > 0 {
					if _, err := dst.WriteAt(p, off); err != nil {
						return fmt.Errorf("write restored data at offset %d: %w", off, err)
					}
				}
				report(done.Add(int64(n)))
			}
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("restore %s of backup %s: %w", volume, m.ID, err)
	}
	if err := l.release(ctx); err != nil {
		return fmt.Errorf("restore %s of backup %s: %w", volume, m.ID, err)
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
