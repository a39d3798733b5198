package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// PruneOptions configure PruneWith.
type PruneOptions struct {
	// MaxUnused: a pack is repacked when more than this fraction of its
	// bytes is held by chunks no backup references; 0 means
	// DefaultMaxUnused. Packs below it keep their garbage until more
	// accumulates (copying 16 MiB to free a few KiB is not worth it).
	MaxUnused float64
	// RepackAll repacks every pack holding any unreferenced chunk: the
	// most space back, for the most I/O.
	RepackAll bool
}

// DefaultMaxUnused is the share of a pack that may be garbage before
// prune repacks it.
const DefaultMaxUnused = 0.2

// PruneStats counts what Prune did.
type PruneStats struct {
	BackupsDeleted  int   // manifests deleted (of those asked)
	BackupsKept     int   // manifests left
	ChunksDeleted   int   // chunk blobs dropped with their packs: referenced by no backup left (or spare copies)
	BytesDeleted    int64 // bytes freed: the size of the packs deleted less that of the packs repacking wrote
	ChunksKept      int   // chunks the backups left reference (one copy each)
	BytesKept       int64 // their blob bytes
	PacksDeleted    int   // packs deleted, repacked ones included
	PacksRepacked   int   // of those, packs whose live chunks were copied first
	ChunksRepacked  int   // chunks copied into new packs
	PacksWritten    int   // new packs
	BytesWritten    int64 // their size
	PacksIndexed    int   // packs no index named that hold live chunks, indexed again
	IndexWritten    int   // index objects written
	IndexDeleted    int   // index objects superseded and deleted
	UnusedBytes     int64 // blobs no backup needs left in kept packs (below the repack threshold)
	PacksUnreadable int   // unindexed packs whose header cannot be read: left alone, verify reports them
	PacksDamaged    int   // packs to repack with a chunk failing its check: kept as they are
}

// maxIndexObjects: when more index objects than this would remain, prune
// rewrites them all into few large ones (each backup writes at least one,
// and every operation lists and reads them).
const maxIndexObjects = 64

// Prune is PruneWith and the default options.
func (r *Repo) Prune(ctx context.Context, forget []string) (*PruneStats, error) {
	return r.PruneWith(ctx, forget, PruneOptions{})
}

// PruneWith deletes the backups in forget (exact ids; already deleted
// ones are fine), then removes the chunks no remaining backup references,
// under an exclusive lock. Order, so that a crash anywhere leaves a valid
// repository (at worst garbage, removed by the next prune):
//
//  1. delete the forgotten manifests (durable when Delete returns);
//  2. mark: read every remaining manifest; if one cannot be read, stop
//     before changing anything else (its references are unknown);
//  3. plan: read the whole index, list the packs, read the headers of
//     the packs no index names; keep one copy of every live chunk; a pack
//     without one is deleted, a pack whose garbage is over the threshold
//     is repacked;
//  4. repack: copy the live chunks of those packs, each checked first,
//     into new packs (stored, durable); they are not indexed yet;
//  5. write index objects for the new packs and for every pack an index
//     object about to be superseded still names (and for unindexed packs
//     holding live chunks);
//  6. delete the superseded index objects: those naming a pack to delete,
//     and unreadable ones;
//  7. delete the packs, in batches, checking the lock before each.
//
// Readers never see a chunk vanish: every pack still named by an index
// object exists until step 7, which comes after the index stops naming
// it; a read that finds a pack gone reloads the index and finds the copy.
// No backup runs meanwhile (the lock), so no pack stored for a manifest
// not yet written is deleted.
func (r *Repo) PruneWith(ctx context.Context, forget []string, opts PruneOptions) (*PruneStats, error) {
	for _, id := range forget {
		if !validBackupID(id) {
			return nil, fmt.Errorf("prune: backup id %q: %w", id, ErrInvalid)
		}
	}
	if opts.MaxUnused <= 0 {
		opts.MaxUnused = DefaultMaxUnused
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
	scan, err := r.scanIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	for id, err := range scan.bad {
		if errors.Is(err, ErrVersion) {
			return nil, fmt.Errorf("prune: index object %s: %w", indexKey(id), err)
		}
	}
	plans := r.planPacks(scan, live, opts, st)
	newPacks, err := r.repack(ctx, l, plans, st)
	if err != nil {
		return nil, fmt.Errorf("prune: nothing deleted: %w", err)
	}
	r.fp.Hit(FailPruneBeforeIndex)
	packs, supersede := indexChanges(scan, plans, newPacks, st)
	if len(packs) > 0 || len(supersede) > 0 {
		st.IndexWritten, st.IndexDeleted, err = r.replaceIndex(ctx, l, packs, supersede, FailPruneBeforeUnlink)
		if err != nil {
			return nil, fmt.Errorf("prune: rewrite the index: %w", err)
		}
	}
	r.fp.Hit(FailBeforeSweep)
	if err := r.sweep(ctx, l, plans, st); err != nil {
		return nil, err
	}
	st.BytesDeleted -= st.BytesWritten
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
			return nil, fmt.Errorf("prune: nothing deleted but manifests: %w", err)
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

// What prune does with a pack.
const (
	packKeep   = iota // stays (an orphan holding live chunks is indexed)
	packRepack        // its live chunks are copied, then it is deleted
	packDelete        // holds no live chunk: deleted
)

// packPlan is prune's view of one pack.
type packPlan struct {
	id      ID
	size    int64
	entries []packEntry
	keep    []bool // entry i is the copy kept of a live chunk
	kept    int
	used    int64 // bytes of the kept blobs
	orphan  bool  // no readable index object names it
	action  int
}

// planPacks picks one copy of every live chunk (in the pack with the
// most live bytes, so duplicates leave the emptier packs) and decides
// each pack's fate.
func (r *Repo) planPacks(scan *indexScan, live map[ID]struct{}, opts PruneOptions, st *PruneStats) []*packPlan {
	var plans []*packPlan
	liveBytes := map[ID]int64{}
	for id, size := range scan.present {
		entries := scan.entries(id)
		if entries == nil {
			st.PacksUnreadable++
			continue
		}
		_, indexed := scan.indexed[id]
		p := &packPlan{id: id, size: size, entries: entries, keep: make([]bool, len(entries)), orphan: !indexed}
		for _, e := range entries {
			if _, ok := live[e.ID]; ok {
				liveBytes[id] += int64(e.Len)
			}
		}
		plans = append(plans, p)
	}
	slices.SortFunc(plans, func(a, b *packPlan) int {
		fa, fb := float64(liveBytes[a.id])/float64(a.size), float64(liveBytes[b.id])/float64(b.size)
		switch {
		case fa != fb:
			if fa > fb {
				return -1
			}
			return 1
		case a.orphan != b.orphan:
			if b.orphan {
				return -1
			}
			return 1
		}
		return slices.Compare(a.id[:], b.id[:])
	})
	chosen := make(map[ID]struct{}, len(live))
	for _, p := range plans {
		for i, e := range p.entries {
			if _, ok := live[e.ID]; !ok {
				continue
			}
			if _, ok := chosen[e.ID]; ok {
				continue
			}
			chosen[e.ID] = struct{}{}
			p.keep[i] = true
			p.kept++
			p.used += int64(e.Len)
		}
		st.ChunksKept += p.kept
		st.BytesKept += p.used
		if p.kept == 0 {
			p.action = packDelete
			continue
		}
		dead := p.size - p.used - r.codec.packHeaderLen(p.kept)
		if dead > 0 && (opts.RepackAll || float64(dead) > opts.MaxUnused*float64(p.size)) {
			p.action = packRepack
		} else {
			for i, e := range p.entries {
				if !p.keep[i] {
					st.UnusedBytes += int64(e.Len)
				}
			}
		}
	}
	return plans
}

// indexChanges returns the packs to write index objects for and the
// index objects they supersede.
func indexChanges(scan *indexScan, plans []*packPlan, newPacks []indexPack, st *PruneStats) ([]indexPack, []ID) {
	changed := map[ID]bool{} // packs the index must stop naming
	kept := map[ID]*packPlan{}
	for _, p := range plans {
		if p.action == packKeep {
			kept[p.id] = p
		} else {
			changed[p.id] = true
		}
	}
	for id := range scan.indexed {
		if _, ok := scan.present[id]; !ok {
			changed[id] = true // missing: verify reports its chunks, backups store them again
		}
	}
	var supersede []ID
	for obj, packs := range scan.objects {
		if slices.ContainsFunc(packs, func(id ID) bool { return changed[id] }) {
			supersede = append(supersede, obj)
		}
	}
	if len(scan.objects)-len(supersede) > maxIndexObjects {
		supersede = supersede[:0] // consolidate: all of them
		for obj := range scan.objects {
			supersede = append(supersede, obj)
		}
	}
	for obj := range scan.bad {
		supersede = append(supersede, obj)
	}
	// Every kept pack a superseded object names, every kept orphan, and
	// the new packs.
	out := slices.Clone(newPacks)
	listed := map[ID]bool{}
	for _, obj := range supersede {
		for _, id := range scan.objects[obj] {
			if p, ok := kept[id]; ok && !listed[id] {
				listed[id] = true
				out = append(out, indexPack{ID: id, Entries: p.entries})
			}
		}
	}
	for _, p := range plans {
		if p.action == packKeep && p.orphan {
			st.PacksIndexed++
			out = append(out, indexPack{ID: p.id, Entries: p.entries})
		}
	}
	return out, supersede
}

// sweep deletes the packs planned for deletion or repacked.
func (r *Repo) sweep(ctx context.Context, l *heldLock, plans []*packPlan, st *PruneStats) error {
	var dead []*packPlan
	for _, p := range plans {
		if p.action != packKeep {
			dead = append(dead, p)
		}
	}
	slices.SortFunc(dead, func(a, b *packPlan) int { return slices.Compare(a.id[:], b.id[:]) })
	var mu sync.Mutex // guards st
	for len(dead) > 0 {
		if err := l.check(); err != nil {
			return fmt.Errorf("prune: deletion of packs stopped: %w", err)
		}
		batch := dead[:min(r.sweepBatch, len(dead))]
		dead = dead[len(batch):]
		err := forEach(ctx, len(batch), 8, func(ctx context.Context, i int) error {
			p := batch[i]
			if err := r.b.Delete(ctx, packKey(p.id)); err != nil {
				return fmt.Errorf("prune: delete %s: %w", packKey(p.id), err)
			}
			mu.Lock()
			defer mu.Unlock()
			st.PacksDeleted++
			st.BytesDeleted += p.size
			st.ChunksDeleted += len(p.entries) - p.kept
			return nil
		})
		if err != nil {
			return err
		}
		r.fp.Hit(FailMidSweep)
	}
	return nil
}
