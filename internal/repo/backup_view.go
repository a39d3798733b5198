package repo

import (
	"context"
	"errors"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// A backup's view of what the repository holds, and its packs.

// indexEvery is how many packs a backup stores between index objects
// (4 GiB at 16 MiB packs): a killed backup leaves at most that many
// unindexed packs for the next one to read the headers of.
const indexEvery = 256

// loadView loads the index, lists the packs and reads the orphans' headers.
func (b *Backup) loadView(ctx context.Context) error {
	x, err := b.r.refreshIndex(ctx)
	if err != nil {
		return err
	}
	present, _, err := b.r.listPacks(ctx)
	if err != nil {
		return err
	}
	gone, orphans := x.split(present)
	b.idx, b.gone = x, gone
	headers := make([][]packEntry, len(orphans))
	err = forEach(ctx, len(orphans), 8, func(ctx context.Context, i int) error {
		entries, err := b.r.readPackHeader(ctx, orphans[i], present[orphans[i]])
		if errors.Is(err, ErrCorrupt) || errors.Is(err, backend.ErrNotExist) {
			return nil // unusable (verify reports it) or deleted meanwhile
		}
		headers[i] = entries
		return err
	})
	if err != nil {
		return err
	}
	for i, entries := range headers {
		if entries == nil {
			continue
		}
		k := len(b.orphans)
		b.orphans = append(b.orphans, indexPack{ID: orphans[i], Entries: entries})
		for _, e := range entries {
			if _, ok := b.adopted[e.ID]; !ok {
				b.adopted[e.ID] = k
			}
		}
	}
	b.orphanUsed = make([]bool, len(b.orphans))
	return nil
}

// known reports whether the repository holds chunk id (when the backup
// started, or stored by it since).
func (b *Backup) known(id ID) bool {
	if b.idx.has(id, b.gone) {
		return true
	}
	b.dedupMu.Lock()
	defer b.dedupMu.Unlock()
	return b.knownLocked(id)
}

func (b *Backup) knownLocked(id ID) bool {
	if k, ok := b.adopted[id]; ok {
		b.orphanUsed[k] = true // this backup will reference it: index its pack
		return true
	}
	_, ok := b.claimed[id]
	return ok
}

// claim reports whether chunk id is new, and if so records it: the caller
// that gets true stores the chunk; a failed store fails the whole
// backup, so no manifest ever references a chunk claimed but not stored.
func (b *Backup) claim(id ID) bool {
	if b.idx.has(id, b.gone) {
		return false
	}
	b.dedupMu.Lock()
	defer b.dedupMu.Unlock()
	if b.knownLocked(id) {
		return false
	}
	b.claimed[id] = struct{}{}
	return true
}

// packStored records a stored pack, and writes an index object every
// indexEvery packs.
func (b *Backup) packStored(ctx context.Context, p indexPack, size int64) error {
	var blobs int64
	for _, e := range p.Entries {
		blobs += int64(e.Len)
	}
	b.idxMu.Lock()
	b.pending = append(b.pending, p)
	b.overhead += size - blobs
	b.packsNew++
	var batch []indexPack
	if len(b.pending) >= indexEvery {
		batch, b.pending = b.pending, nil
	}
	b.idxMu.Unlock()
	if batch == nil {
		return nil
	}
	return b.writeIndex(ctx, batch)
}

// writeIndex writes index objects for packs.
func (b *Backup) writeIndex(ctx context.Context, packs []indexPack) error {
	_, size, err := b.r.writeIndex(ctx, packs)
	b.idxMu.Lock()
	b.overhead += size
	b.idxMu.Unlock()
	return err
}
