package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// ReadData fetches every referenced chunk once and checks it (crc,
	// authentication, decompression, hash to its id, length). Without
	// it, Verify checks that every manifest decodes and that every chunk
	// it references exists.
	ReadData bool
	// Repair (with ReadData) deletes the chunks that fail their checks,
	// under an exclusive lock, so that the next backup whose source still
	// holds that data uploads it again (a backup deduplicates against
	// what the repository holds, corrupt or not). Backups that reference
	// them stay broken: they are reported, then missing.
	Repair   bool
	Workers  int                     // parallel chunk reads; default 4
	Progress func(done, total int64) // ReadData: stored bytes checked of the total
}

// VerifyResult counts what Verify saw.
type VerifyResult struct {
	Backups           int   // manifests that decoded
	BadBackups        int   // manifests that did not
	Chunks            int   // distinct chunks referenced
	ChunksRead        int   // of those, read and checked (ReadData)
	BytesRead         int64 // stored bytes read (ReadData)
	MissingChunks     int   // referenced, not stored
	CorruptChunks     int   // referenced, stored, failed a check
	Deleted           int   // corrupt chunks deleted by Repair
	Unreferenced      int   // stored, referenced by no backup (garbage prune sweeps)
	UnreferencedBytes int64
	Problems          int // calls of report
}

// Verify checks the repository under a read lock on every backup and
// calls report (serially) once per problem: a *ManifestError for a
// manifest that does not decode, a *ChunkError per backup, volume and
// bad chunk (named at the first offset where that volume uses it), or an
// error wrapping ErrCorrupt for an object that does not belong. The
// returned error is for what stopped the check itself (backend, lock, ctx).
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
	stored, err := r.listChunks(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if err := r.b.List(ctx, chunkPrefix, func(key string, _ int64) error {
		if _, ok := parseChunkKey(key); !ok {
			problem(fmt.Errorf("object %s is not a chunk key: %w", key, ErrCorrupt))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("verify: list chunks: %w", err)
	}
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
	bad := map[ID]error{}
	for id := range referenced {
		if _, ok := stored[id]; !ok {
			bad[id] = fmt.Errorf("object %s: %w", chunkKey(id), ErrMissingChunk)
			res.MissingChunks++
		}
	}
	for id, size := range stored {
		if _, ok := referenced[id]; !ok {
			res.Unreferenced++
			res.UnreferencedBytes += size
		}
	}
	var lens map[ID]int
	if opts.ReadData {
		if lens, err = r.verifyData(ctx, opts, referenced, stored, bad, res); err != nil {
			return nil, err
		}
	}
	reportChunks(ms, bad, lens, problem)
	if opts.Repair && opts.ReadData {
		for id, err := range bad {
			if !errors.Is(err, ErrCorrupt) {
				continue
			}
			if err := l.check(); err != nil {
				return nil, fmt.Errorf("verify: repair: %w", err)
			}
			if err := r.b.Delete(ctx, chunkKey(id)); err != nil {
				return nil, fmt.Errorf("verify: repair: delete %s: %w", chunkKey(id), err)
			}
			res.Deleted++
		}
	}
	if err := l.release(ctx); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return res, nil
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

// verifyData reads every referenced, stored chunk once; failures go in
// bad, plaintext lengths in the returned map.
func (r *Repo) verifyData(ctx context.Context, opts VerifyOptions, referenced map[ID]struct{}, stored map[ID]int64,
	bad map[ID]error, res *VerifyResult) (map[ID]int, error) {
	var todo []ID
	var total int64
	for id := range referenced {
		if size, ok := stored[id]; ok {
			todo = append(todo, id)
			total += size
		}
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	lens := make(map[ID]int, len(todo))
	var mu sync.Mutex // guards lens, bad and res
	var next, done atomic.Int64
	report := serialProgress(opts.Progress, total)
	g, gctx := errgroup.WithContext(ctx)
	for range opts.Workers {
		g.Go(func() error {
			buf := make([]byte, 0, r.cfg.ChunkSize)
			for {
				k := next.Add(1) - 1
				if k >= int64(len(todo)) || gctx.Err() != nil {
					return gctx.Err()
				}
				id := todo[k]
				p, err := r.readChunk(gctx, id, buf)
				if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrMissingChunk) {
					return err // the check itself failed (backend, ctx): not a verdict on the chunk
				}
				mu.Lock()
				res.ChunksRead++
				res.BytesRead += stored[id]
				switch {
				case errors.Is(err, ErrMissingChunk): // deleted since the listing
					bad[id] = err
					res.MissingChunks++
				case err != nil:
					bad[id] = err
					res.CorruptChunks++
				default:
					lens[id] = len(p)
				}
				mu.Unlock()
				report(done.Add(stored[id]))
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return lens, nil
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
