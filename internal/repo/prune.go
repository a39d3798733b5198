package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// PruneStats counts what Prune did.
type PruneStats struct {
	BackupsDeleted int   // manifests deleted (of those asked)
	BackupsKept    int   // manifests left
	ChunksDeleted  int   // unreferenced chunks swept
	BytesDeleted   int64 // their stored size
	ChunksKept     int
	BytesKept      int64
}

// Prune deletes the backups in forget (exact ids; already deleted ones
// are fine), then sweeps every chunk no remaining backup references,
// under an exclusive lock. Order, so that a crash anywhere leaves a valid
// repository (at worst unreferenced chunks, swept by the next prune):
//
//  1. delete the forgotten manifests (durable when Delete returns);
//  2. mark: read every remaining manifest; if one cannot be read, stop
//     before deleting any chunk (its references are unknown);
//  3. sweep: delete the chunks that are not marked, checking the lock
//     is still held before each batch.
//
// No backup runs meanwhile (the lock), so no chunk uploaded for a
// manifest not yet written can be swept.
func (r *Repo) Prune(ctx context.Context, forget []string) (*PruneStats, error) {
	for _, id := range forget {
		if !validBackupID(id) {
			return nil, fmt.Errorf("prune: backup id %q: %w", id, ErrInvalid)
		}
	}
	l, err := r.lock(ctx, lockExclusive, "prune", forget)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer l.release(ctx)
	st := &PruneStats{}
	for _, id := range forget {
		if _, err := r.b.Size(ctx, manifestKey(id)); err == nil {
			st.BackupsDeleted++
		}
		if err := r.b.Delete(ctx, manifestKey(id)); err != nil {
			return nil, fmt.Errorf("prune: delete backup %s: %w", id, err)
		}
	}
	live, err := r.mark(ctx, st)
	if err != nil {
		return nil, err
	}
	r.fp.Hit(FailBeforeSweep)
	if err := r.sweep(ctx, l, live, st); err != nil {
		return nil, err
	}
	if err := l.release(ctx); err != nil {
		return st, fmt.Errorf("prune: %w", err)
	}
	return st, nil
}

// mark returns the ids every remaining manifest references.
func (r *Repo) mark(ctx context.Context, st *PruneStats) (map[ID]struct{}, error) {
	ids, err := r.IDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	live := map[ID]struct{}{}
	for _, id := range ids {
		m, err := r.loadManifest(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("prune: nothing swept: %w", err)
		}
		st.BackupsKept++
		for _, v := range m.Volumes {
			for _, c := range v.Chunks {
				if !c.IsNull() {
					live[c] = struct{}{}
				}
			}
		}
	}
	return live, nil
}

// sweep deletes every stored chunk not in live.
func (r *Repo) sweep(ctx context.Context, l *heldLock, live map[ID]struct{}, st *PruneStats) error {
	stored, err := r.listChunks(ctx)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	var dead []ID
	for id, size := range stored {
		if _, ok := live[id]; ok {
			st.ChunksKept++
			st.BytesKept += size
		} else {
			dead = append(dead, id)
		}
	}
	var mu sync.Mutex // guards st
	for len(dead) > 0 {
		if err := l.check(); err != nil {
			return fmt.Errorf("prune: sweep stopped: %w", err)
		}
		batch := dead[:min(r.sweepBatch, len(dead))]
		dead = dead[len(batch):]
		var next atomic.Int64
		g, gctx := errgroup.WithContext(ctx)
		for range min(8, len(batch)) {
			g.Go(func() error {
				for k := next.Add(1) - 1; k < int64(len(batch)); k = next.Add(1) - 1 {
					id := batch[k]
					if err := r.b.Delete(gctx, chunkKey(id)); err != nil {
						return fmt.Errorf("prune: delete %s: %w", chunkKey(id), err)
					}
					mu.Lock()
					st.ChunksDeleted++
					st.BytesDeleted += stored[id]
					mu.Unlock()
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		r.fp.Hit(FailMidSweep)
	}
	return nil
}
