package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// repack copies the kept chunks of the packs planned for repacking into
// new packs and returns them (stored, not yet indexed). Each pack is read
// whole and every chunk to copy is checked first (crc, tag, hash): a pack
// with a chunk that fails is not repacked but kept as it is, so damage is
// never copied into a healthy pack (verify --read-data names it).
func (r *Repo) repack(ctx context.Context, l *heldLock, plans []*packPlan, st *PruneStats) ([]indexPack, error) {
	var todo []*packPlan
	for _, p := range plans {
		if p.action == packRepack {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	slices.SortFunc(todo, func(a, b *packPlan) int { return slices.Compare(a.id[:], b.id[:]) })
	var mu sync.Mutex // guards newPacks and st
	var newPacks []indexPack
	pk := newPacker(r, func(_ context.Context, p indexPack, size int64) error {
		mu.Lock()
		newPacks = append(newPacks, p)
		st.PacksWritten++
		st.BytesWritten += size
		first := st.PacksWritten == 1
		mu.Unlock()
		if first {
			r.fp.Hit(FailRepackMid)
		}
		return nil
	})
	err := forEach(ctx, len(todo), 2, func(ctx context.Context, i int) error {
		p := todo[i]
		if err := l.check(); err != nil {
			return err
		}
		obj, err := r.b.Get(ctx, packKey(p.id))
		if errors.Is(err, backend.ErrNotExist) {
			return fmt.Errorf("pack %s vanished: %w", packKey(p.id), err)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", packKey(p.id), err)
		}
		if !r.checkRepack(p, obj) {
			mu.Lock()
			p.action = packKeep
			st.PacksDamaged++
			mu.Unlock()
			return nil
		}
		for k, e := range p.entries {
			if p.keep[k] {
				if err := pk.add(ctx, e.ID, obj[e.Off:e.end()]); err != nil {
					return err
				}
			}
		}
		mu.Lock()
		st.PacksRepacked++
		st.ChunksRepacked += p.kept
		mu.Unlock()
		return nil
	})
	if err == nil {
		err = pk.flush(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("repack: %w", err)
	}
	return newPacks, nil
}

// checkRepack reports whether every kept chunk of pack p is intact in
// obj (damage elsewhere in the pack goes with it).
func (r *Repo) checkRepack(p *packPlan, obj []byte) bool {
	scratch := make([]byte, 0, r.cfg.ChunkSize)
	var blob []byte
	for k, e := range p.entries {
		if !p.keep[k] {
			continue
		}
		if e.end() > int64(len(obj)) {
			return false
		}
		blob = append(blob[:0], obj[e.Off:e.end()]...) // openBlob decrypts in place
		if _, err := r.codec.openBlob(e.ID, blob, r.cfg.ChunkSize, scratch); err != nil {
			return false
		}
	}
	return true
}
