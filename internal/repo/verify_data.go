package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// dataCheck is what Verify's data pass found.
type dataCheck struct {
	lens     map[ID]int           // plaintext length of each referenced chunk with a good copy
	bad      map[ID]error         // referenced chunks with no good copy: the first copy's error
	entryOK  map[ID]map[int]bool  // pack -> index entries checked good
	entryBad map[ID]map[int]error // pack -> index entries that failed
}

// packCheck is the verdict on one pack read whole.
type packCheck struct {
	ok       map[int]int   // entry -> plaintext length
	bad      map[int]error // entry -> why it failed
	problems []error       // about the pack itself (header, hash, index disagreeing)
	size     int64
}

// verifyData reads whole every pack that holds a referenced chunk and
// checks those chunks.
func (r *Repo) verifyData(ctx context.Context, opts VerifyOptions, scan *indexScan, referenced map[ID]struct{},
	res *VerifyResult, problem func(error)) (*dataCheck, error) {
	var todo []ID
	var total int64
	for _, pack := range sortedIDs(scan.indexed) {
		size, ok := scan.present[pack]
		if !ok {
			continue
		}
		for _, e := range scan.indexed[pack] {
			if referencedHas(referenced, e.ID) {
				todo = append(todo, pack)
				total += size
				break
			}
		}
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	checks := make([]*packCheck, len(todo))
	var mu sync.Mutex // guards done
	var done int64
	report := serialProgress(opts.Progress, total)
	err := forEach(ctx, len(todo), opts.Workers, func(ctx context.Context, i int) error {
		c, err := r.checkPack(ctx, todo[i], scan.indexed[todo[i]], referenced)
		if err != nil {
			return err
		}
		checks[i] = c
		mu.Lock()
		done += c.size
		n := done
		mu.Unlock()
		report(n)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	d := &dataCheck{lens: map[ID]int{}, bad: map[ID]error{}, entryOK: map[ID]map[int]bool{}, entryBad: map[ID]map[int]error{}}
	checked := map[ID]bool{}
	for i, pack := range todo {
		c := checks[i]
		res.PacksRead++
		res.BytesRead += c.size
		for _, p := range c.problems {
			problem(p)
		}
		entries := scan.indexed[pack]
		for k, n := range c.ok {
			id := entries[k].ID
			checked[id] = true
			d.lens[id] = n
			delete(d.bad, id)
			if d.entryOK[pack] == nil {
				d.entryOK[pack] = map[int]bool{}
			}
			d.entryOK[pack][k] = true
		}
		for k, err := range c.bad {
			id := entries[k].ID
			checked[id] = true
			if _, good := d.lens[id]; !good {
				if _, seen := d.bad[id]; !seen {
					d.bad[id] = err
				}
			}
			if d.entryBad[pack] == nil {
				d.entryBad[pack] = map[int]error{}
			}
			d.entryBad[pack][k] = err
		}
	}
	res.ChunksRead = len(checked)
	// A corrupt spare copy of a chunk that has a good one is damage too,
	// though no backup is hurt by it.
	for _, pack := range todo {
		for k, err := range d.entryBad[pack] {
			if _, good := d.lens[scan.indexed[pack][k].ID]; good {
				problem(fmt.Errorf("spare copy of chunk %s (another copy is good): %w", scan.indexed[pack][k].ID, err))
			}
		}
	}
	return d, nil
}

// checkPack reads pack id whole and checks its header, its name (the
// hash of its bytes), that the index entries are the header's, and every
// referenced chunk.
func (r *Repo) checkPack(ctx context.Context, id ID, entries []packEntry, referenced map[ID]struct{}) (*packCheck, error) {
	key := packKey(id)
	c := &packCheck{ok: map[int]int{}, bad: map[int]error{}}
	obj, err := r.b.Get(ctx, key)
	if errors.Is(err, backend.ErrNotExist) {
		for k, e := range entries {
			if referencedHas(referenced, e.ID) {
				c.bad[k] = fmt.Errorf("pack %s: %w", key, ErrMissingChunk)
			}
		}
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	c.size = int64(len(obj))
	header, herr := r.codec.decodePackObject(obj)
	if herr != nil {
		c.problems = append(c.problems, fmt.Errorf("pack %s: %w", key, herr))
	} else {
		inHeader := make(map[packEntry]bool, len(header))
		for _, e := range header {
			inHeader[e] = true
		}
		for _, e := range entries {
			if !inHeader[e] {
				c.problems = append(c.problems, fmt.Errorf("pack %s: the index puts chunk %s at [%d, +%d), its header does not: %w",
					key, e.ID, e.Off, e.Len, ErrCorrupt))
				break
			}
		}
	}
	scratch := make([]byte, 0, r.cfg.ChunkSize)
	var blob []byte
	for k, e := range entries {
		if !referencedHas(referenced, e.ID) {
			continue
		}
		if e.end() > int64(len(obj)) {
			c.bad[k] = fmt.Errorf("pack %s offset %d length %d: the pack has %d bytes: %w", key, e.Off, e.Len, len(obj), ErrCorrupt)
			continue
		}
		blob = append(blob[:0], obj[e.Off:e.end()]...) // openBlob decrypts in place
		p, err := r.codec.openBlob(e.ID, blob, r.cfg.ChunkSize, scratch)
		if err != nil {
			c.bad[k] = fmt.Errorf("pack %s offset %d length %d: %w", key, e.Off, e.Len, err)
			continue
		}
		c.ok[k] = len(p)
	}
	if len(c.problems) == 0 && len(c.bad) == 0 && contentID(obj) != id {
		c.problems = append(c.problems, fmt.Errorf("pack %s: its bytes do not hash to its name: %w", key, ErrCorrupt))
	}
	return c, nil
}

// repair (exclusive lock, after a data check): repack the packs holding
// corrupt chunks without them, index the packs no index names, replace
// unreadable index objects, with prune's order (new packs, new index,
// superseded index objects deleted, old packs deleted).
func (r *Repo) repair(ctx context.Context, l *heldLock, scan *indexScan, d *dataCheck, res *VerifyResult) error {
	st := &PruneStats{}
	var plans []*packPlan
	for id, size := range scan.present {
		entries := scan.entries(id)
		if entries == nil {
			continue // unreadable orphan: reported, left alone
		}
		_, indexed := scan.indexed[id]
		p := &packPlan{id: id, size: size, entries: entries, keep: make([]bool, len(entries)), orphan: !indexed}
		if bad := d.entryBad[id]; len(bad) > 0 {
			res.Deleted += len(bad)
			p.action = packDelete
			for k := range entries {
				if d.entryOK[id][k] {
					p.keep[k] = true
					p.kept++
					p.action = packRepack
				}
			}
		}
		plans = append(plans, p)
	}
	newPacks, err := r.repack(ctx, l, plans, st)
	if err != nil {
		return err
	}
	packs, supersede := indexChanges(scan, plans, newPacks, st)
	if len(packs) > 0 || len(supersede) > 0 {
		if _, _, err := r.replaceIndex(ctx, l, packs, supersede, ""); err != nil {
			return err
		}
	}
	res.Reindexed = st.PacksIndexed
	return r.sweep(ctx, l, plans, st)
}
