package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// ReadData reads every pack that holds a referenced chunk, whole, and
	// checks every referenced chunk in it (crc, authentication,
	// decompression, hash to its id, length) and the pack's header.
	// Without it, Verify checks that every manifest and index object
	// decodes and that every referenced chunk is indexed in a pack that
	// exists.
	ReadData bool
	// Repair (with ReadData), under an exclusive lock: packs holding a
	// corrupt chunk are repacked without it (their good chunks, checked,
	// go into new packs), so the next backup whose source still holds
	// that data stores it again; packs no index names are indexed again
	// (from their headers); unreadable index objects are replaced.
	// Backups that reference a corrupt chunk stay broken until then:
	// they are reported, and afterwards the chunk is missing.
	Repair   bool
	Workers  int                     // parallel pack reads; default 4
	Progress func(done, total int64) // ReadData: stored bytes checked of the total
}

// VerifyResult counts what Verify saw.
type VerifyResult struct {
	Backups           int   // manifests that decoded
	BadBackups        int   // manifests that did not
	Chunks            int   // distinct chunks referenced
	ChunksRead        int   // of those, read and checked (ReadData)
	BytesRead         int64 // pack bytes read (ReadData)
	MissingChunks     int   // referenced, in no pack the index names
	CorruptChunks     int   // referenced, every copy failed a check
	Deleted           int   // corrupt chunk copies removed by Repair (with their packs, repacked)
	Unreferenced      int   // chunk blobs no backup needs (garbage prune removes), spare copies included
	UnreferencedBytes int64 //
	Packs             int   // pack objects
	PacksRead         int   // of those, read whole (ReadData)
	OrphanPacks       int   // packs no index object names (a killed backup, an interrupted prune)
	IndexObjects      int   //
	BadIndex          int   // index objects that do not decode
	Reindexed         int   // orphan packs indexed again by Repair
	Problems          int   // calls of report
}

// Verify checks the repository under a read lock on every backup and
// calls report (serially) once per problem: a *ManifestError for a
// manifest that does not decode, a *ChunkError per backup, volume and
// bad chunk (named at the first offset where that volume uses it), or an
// error wrapping ErrCorrupt (or ErrVersion) for an index object or pack
// that is damaged or an object that does not belong. The returned error is
// for what stopped the check itself (backend, lock, ctx).
func (r *Repo) Verify(ctx context.Context, opts VerifyOptions, report func(problem error)) (*VerifyResult, error) {
	kind := lockRead
	if opts.Repair {
		kind = lockExclusive
	}
	l, err := r.lock(ctx, kind, "verify", nil)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer l.release(ctx)
	res := &VerifyResult{}
	problem := func(err error) {
		res.Problems++
		report(err)
	}
	if obj, err := r.b.Get(ctx, configKey); err != nil {
		return nil, fmt.Errorf("verify: read config: %w", err)
	} else if _, err := DecodeConfig(obj); err != nil {
		problem(fmt.Errorf("config: %w", err))
	}
	ms, err := r.verifyManifests(ctx, res, problem)
	if err != nil {
		return nil, err
	}
	scan, err := r.scanIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	reportScan(scan, res, problem)
	referenced := map[ID]struct{}{}
	for _, m := range ms {
		for _, v := range m.Volumes {
			for _, id := range v.Chunks {
				if !id.IsNull() {
					referenced[id] = struct{}{}
				}
			}
		}
	}
	res.Chunks = len(referenced)
	bad := r.checkReferences(scan, referenced, res)
	var d *dataCheck
	if opts.ReadData {
		if d, err = r.verifyData(ctx, opts, scan, referenced, res, problem); err != nil {
			return nil, err
		}
		for id, err := range d.bad {
			bad[id] = err
			if errors.Is(err, ErrMissingChunk) {
				res.MissingChunks++ // deleted since the listing
			} else {
				res.CorruptChunks++
			}
		}
	}
	var lens map[ID]int
	if d != nil {
		lens = d.lens
	}
	reportChunks(ms, bad, lens, problem)
	if opts.Repair && opts.ReadData {
		if err := r.repair(ctx, l, scan, d, res); err != nil {
			return nil, fmt.Errorf("verify: repair: %w", err)
		}
	}
	if err := l.release(ctx); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return res, nil
}

// reportScan reports stray keys, unreadable index objects and orphan
// packs whose header cannot be read, and counts objects.
func reportScan(scan *indexScan, res *VerifyResult, problem func(error)) {
	slices.Sort(scan.stray)
	for _, key := range scan.stray {
		problem(fmt.Errorf("object %s is not an index or pack key: %w", key, ErrCorrupt))
	}
	for _, id := range sortedIDs(scan.bad) {
		problem(scan.bad[id])
	}
	for _, id := range sortedIDs(scan.badOrphans) {
		problem(fmt.Errorf("pack %s, named by no index: %w", packKey(id), scan.badOrphans[id]))
	}
	res.Packs = len(scan.present)
	res.OrphanPacks = len(scan.orphans) + len(scan.badOrphans)
	res.IndexObjects = len(scan.objects) + len(scan.bad)
	res.BadIndex = len(scan.bad)
}

// checkReferences finds the referenced chunks with no copy in an existing
// pack the index names, and counts the garbage.
func (r *Repo) checkReferences(scan *indexScan, referenced map[ID]struct{}, res *VerifyResult) map[ID]error {
	where := map[ID]ID{} // chunk -> a pack holding it that is missing or unindexed
	seen := map[ID]bool{}
	for _, pack := range sortedIDs(scan.indexed) {
		_, present := scan.present[pack]
		for _, e := range scan.indexed[pack] {
			switch {
			case !present:
				where[e.ID] = pack
			case !referencedHas(referenced, e.ID) || seen[e.ID]:
				res.Unreferenced++
				res.UnreferencedBytes += int64(e.Len)
			default:
				seen[e.ID] = true
			}
		}
	}
	orphanHolds := map[ID]ID{}
	for _, pack := range sortedIDs(scan.orphans) {
		for _, e := range scan.orphans[pack] {
			res.Unreferenced++ // readers cannot find it: garbage until indexed
			res.UnreferencedBytes += int64(e.Len)
			orphanHolds[e.ID] = pack
		}
	}
	bad := map[ID]error{}
	for id := range referenced {
		if seen[id] {
			continue
		}
		res.MissingChunks++
		switch pack, ok := orphanHolds[id]; {
		case ok:
			bad[id] = fmt.Errorf("not in the index; pack %s, which no index names, holds it (prune or verify --repair indexes it): %w",
				packKey(pack), ErrMissingChunk)
		default:
			if pack, ok := where[id]; ok {
				bad[id] = fmt.Errorf("pack %s: %w", packKey(pack), ErrMissingChunk)
			} else {
				bad[id] = fmt.Errorf("chunk is not in the index: %w", ErrMissingChunk)
			}
		}
	}
	return bad
}

func referencedHas(m map[ID]struct{}, id ID) bool {
	_, ok := m[id]
	return ok
}

// sortedIDs returns the keys of m in order.
func sortedIDs[V any](m map[ID]V) []ID {
	ids := make([]ID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b ID) int { return slices.Compare(a[:], b[:]) })
	return ids
}

// verifyManifests loads every manifest, reporting those that fail and
// objects under snapshots/ that are not manifests.
func (r *Repo) verifyManifests(ctx context.Context, res *VerifyResult, problem func(error)) ([]*Manifest, error) {
	var ids []string
	if err := r.b.List(ctx, manifestPrefix, func(key string, _ int64) error {
		id := strings.TrimPrefix(key, manifestPrefix)
		if !validBackupID(id) {
			problem(fmt.Errorf("object %s is not a backup manifest key: %w", key, ErrCorrupt))
		} else {
			ids = append(ids, id)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("verify: list backups: %w", err)
	}
	var ms []*Manifest
	for _, id := range ids {
		m, err := r.loadManifest(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // forgotten since the listing
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			res.BadBackups++
			problem(err)
			continue
		}
		res.Backups++
		ms = append(ms, m)
	}
	sortManifests(ms)
	return ms, nil
}

// reportChunks reports, per backup and volume, each bad chunk once at the
// first offset where the volume uses it, and (with lens) every chunk
// whose length does not fit its position.
func reportChunks(ms []*Manifest, bad map[ID]error, lens map[ID]int, problem func(error)) {
	for _, m := range ms {
		for _, v := range m.Volumes {
			seen := map[ID]bool{}
			for i, id := range v.Chunks {
				if id.IsNull() || seen[id] {
					continue
				}
				err := bad[id]
				if n, ok := lens[id]; ok && err == nil && n != v.ChunkLen(i) {
					err = fmt.Errorf("chunk of %d bytes where the volume has %d: %w", n, v.ChunkLen(i), ErrCorrupt)
				}
				if err != nil {
					seen[id] = true
					problem(&ChunkError{Backup: m.ID, Volume: v.Name, Offset: int64(i) * int64(v.ChunkSize), ID: id, Err: err})
				}
			}
		}
	}
}
