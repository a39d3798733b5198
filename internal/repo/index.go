package repo

import (
	"context"
	"fmt"
	"sync"
)

// listChunks lists chunks/ once: every stored chunk id with its object
// size. Keys that are not chunk keys are skipped (Verify reports them).
func (r *Repo) listChunks(ctx context.Context) (map[ID]int64, error) {
	chunks := map[ID]int64{}
	err := r.b.List(ctx, chunkPrefix, func(key string, size int64) error {
		if id, ok := parseChunkKey(key); ok {
			chunks[id] = size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list chunks: %w", err)
	}
	return chunks, nil
}

// chunkIndex is the set of chunks a backup may reference without
// uploading: those the repository held when the backup took its lock
// (prune cannot remove them while the lock is held) plus those this
// backup uploads. A killed backup's chunks are in the next one's listing,
// so they are reused, not uploaded again.
type chunkIndex struct {
	mu  sync.Mutex // guards ids
	ids map[ID]struct{}
}

func (r *Repo) loadIndex(ctx context.Context) (*chunkIndex, error) {
	chunks, err := r.listChunks(ctx)
	if err != nil {
		return nil, err
	}
	x := &chunkIndex{ids: make(map[ID]struct{}, len(chunks))}
	for id := range chunks {
		x.ids[id] = struct{}{}
	}
	return x, nil
}

func (x *chunkIndex) has(id ID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.ids[id]
	return ok
}

// claim adds id and reports whether it was new: the caller that gets true
// uploads the chunk; a failed upload fails the whole backup, so no
// manifest ever references a chunk claimed but not stored.
func (x *chunkIndex) claim(id ID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.ids[id]; ok {
		return false
	}
	x.ids[id] = struct{}{}
	return true
}
