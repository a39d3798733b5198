package repo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// Reads of blobs from packs are coalesced: the blobs wanted from one pack
// are sorted by offset and read with one ranged GET per run, a run taking
// in gaps of up to maxReadGap bytes and ending at maxReadSpan bytes.
const (
	maxReadGap  = 256 << 10
	maxReadSpan = 16 << 20
)

// blobReq is one blob to read: a copy of chunk id.
type blobReq struct {
	id  ID
	loc location
}

// fetchChunks reads and checks chunks (distinct, non-null ids) and calls
// got(id, plaintext) for each good one, serially; plaintext is only valid
// during the call. A chunk with several copies is read from the next one
// when a copy fails. A chunk the index lacks, or whose pack is gone, is
// looked up again after one refresh of the index (a prune may have
// repacked it meanwhile). It returns the chunks that could not be read,
// each with an error wrapping ErrMissingChunk or ErrCorrupt and naming
// the pack and offset; err is for what is not a verdict on a chunk (the
// backend failing, ctx, got's error).
func (r *Repo) fetchChunks(ctx context.Context, ids []ID, got func(id ID, p []byte) error) (map[ID]error, error) {
	x, err := r.currentIndex(ctx)
	if err != nil {
		return nil, err
	}
	fails := map[ID]error{}
	todo := ids
	var scratch []byte
	for attempt := 0; ; attempt++ {
		var retry []ID
		for _, id := range todo {
			if len(x.locations(id)) == 0 {
				fails[id] = fmt.Errorf("chunk is not in the index: %w", ErrMissingChunk)
			}
		}
		// Round k reads copy k of every chunk still pending.
		pending := slices.Clone(todo)
		for k := 0; len(pending) > 0; k++ {
			var reqs []blobReq
			for _, id := range pending {
				if locs := x.locations(id); k < len(locs) {
					reqs = append(reqs, blobReq{id: id, loc: locs[k]})
				}
			}
			if len(reqs) == 0 {
				break
			}
			bad, err := r.readBlobs(ctx, reqs, &scratch, got)
			if err != nil {
				return nil, err
			}
			pending = pending[:0]
			for _, q := range reqs {
				if e, ok := bad[q.id]; ok {
					if _, seen := fails[q.id]; !seen {
						fails[q.id] = e
					}
					pending = append(pending, q.id)
				} else {
					delete(fails, q.id)
				}
			}
		}
		for id, e := range fails {
			if attempt == 0 && errors.Is(e, ErrMissingChunk) {
				retry = append(retry, id)
			}
		}
		if len(retry) == 0 {
			return fails, nil
		}
		if x, err = r.refreshIndex(ctx); err != nil {
			return nil, err
		}
		for _, id := range retry {
			delete(fails, id)
		}
		todo = retry
	}
}

// readBlobs reads reqs, coalesced per pack, checks each blob and calls
// got for the good ones. It returns the failed ones with a verdict
// (ErrMissingChunk: the pack is gone; ErrCorrupt), or an error for
// anything else.
func (r *Repo) readBlobs(ctx context.Context, reqs []blobReq, scratch *[]byte, got func(ID, []byte) error) (map[ID]error, error) {
	slices.SortFunc(reqs, func(a, b blobReq) int {
		if c := slices.Compare(a.loc.pack[:], b.loc.pack[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.loc.off, b.loc.off)
	})
	bad := map[ID]error{}
	for len(reqs) > 0 {
		n := 1
		start, end := reqs[0].loc.off, reqs[0].loc.off+reqs[0].loc.n
		for n < len(reqs) {
			q := reqs[n].loc
			if q.pack != reqs[0].loc.pack || q.off < end || q.off-end > maxReadGap || q.off+q.n-start > maxReadSpan {
				break
			}
			end = q.off + q.n
			n++
		}
		run := reqs[:n]
		reqs = reqs[n:]
		key := packKey(run[0].loc.pack)
		data, err := r.b.GetRange(ctx, key, start, end-start)
		switch {
		case errors.Is(err, backend.ErrNotExist):
			for _, q := range run {
				bad[q.id] = fmt.Errorf("pack %s: %w", key, ErrMissingChunk)
			}
			continue
		case errors.Is(shortIsCorrupt(err), ErrCorrupt) && n > 1:
			// The pack is shorter than the index says: find which blobs
			// are still there, one by one.
			for _, q := range run {
				b, err := r.readBlobs(ctx, []blobReq{q}, scratch, got)
				if err != nil {
					return nil, err
				}
				for id, e := range b {
					bad[id] = e
				}
			}
			continue
		case err != nil:
			err = shortIsCorrupt(err)
			if errors.Is(err, ErrCorrupt) {
				bad[run[0].id] = fmt.Errorf("pack %s offset %d length %d: %w", key, start, end-start, err)
				continue
			}
			return nil, fmt.Errorf("read pack %s: %w", key, err)
		}
		if *scratch == nil {
			*scratch = make([]byte, 0, r.cfg.ChunkSize) // zstd's output: no allocation per chunk
		}
		for _, q := range run {
			blob := data[q.loc.off-start : q.loc.off-start+q.loc.n]
			p, err := r.codec.openBlob(q.id, blob, r.cfg.ChunkSize, (*scratch)[:0])
			if err != nil {
				bad[q.id] = fmt.Errorf("pack %s offset %d length %d: %w", key, q.loc.off, q.loc.n, err)
				continue
			}
			if err := got(q.id, p); err != nil {
				return nil, err
			}
		}
	}
	return bad, nil
}
