package repo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// indexScan is the repository's index and packs read from scratch, for
// the operations that check or change them: verify, prune, repair.
type indexScan struct {
	objects    map[ID][]ID        // readable index object -> the packs it lists
	bad        map[ID]error       // index objects that cannot be decoded, and why
	stray      []string           // keys under index/ and packs/ that are not index or pack keys
	present    map[ID]int64       // packs the backend lists -> size
	indexed    map[ID][]packEntry // pack -> the entries index objects give it, by offset
	orphans    map[ID][]packEntry // packs listed, named by no readable index object: their headers
	badOrphans map[ID]error       // such packs whose header cannot be read
}

// scanIndex reads every index object, lists the packs and reads the
// headers of the packs no index names.
func (r *Repo) scanIndex(ctx context.Context) (*indexScan, error) {
	s := &indexScan{objects: map[ID][]ID{}, bad: map[ID]error{}, indexed: map[ID][]packEntry{},
		orphans: map[ID][]packEntry{}, badOrphans: map[ID]error{}}
	names, stray, err := r.listIndex(ctx)
	if err != nil {
		return nil, err
	}
	s.stray = stray
	ids := make([]ID, 0, len(names))
	for id := range names {
		ids = append(ids, id)
	}
	err = r.readIndexObjects(ctx, ids, func(id ID, packs []indexPack, err error) {
		if err != nil {
			s.bad[id] = err
			return
		}
		for _, p := range packs {
			s.objects[id] = append(s.objects[id], p.ID)
			s.indexed[p.ID] = mergeEntries(s.indexed[p.ID], p.Entries)
		}
	})
	if err != nil {
		return nil, err
	}
	present, stray, err := r.listPacks(ctx)
	if err != nil {
		return nil, err
	}
	s.present = present
	s.stray = append(s.stray, stray...)
	var orphans []ID
	for id := range present {
		if _, ok := s.indexed[id]; !ok {
			orphans = append(orphans, id)
		}
	}
	var mu sync.Mutex // guards orphans and badOrphans
	err = forEach(ctx, len(orphans), 8, func(ctx context.Context, i int) error {
		id := orphans[i]
		entries, err := r.readPackHeader(ctx, id, present[id])
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			s.orphans[id] = entries
		case errors.Is(err, ErrCorrupt):
			s.badOrphans[id] = err
		case errors.Is(err, backend.ErrNotExist):
			delete(s.present, id) // deleted since the listing
		default:
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// mergeEntries is the union of two entry lists, by offset. Index objects
// that name the same pack list the same entries (or one a subset).
func mergeEntries(a, b []packEntry) []packEntry {
	if len(a) == 0 {
		return b
	}
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, func(x, y packEntry) int {
		if c := cmp.Compare(x.Off, y.Off); c != 0 {
			return c
		}
		return slices.Compare(x.ID[:], y.ID[:])
	})
	return slices.Compact(out)
}

// entries returns what is known of pack id's blobs: its index entries,
// or an orphan's header.
func (s *indexScan) entries(id ID) []packEntry {
	if e, ok := s.indexed[id]; ok {
		return e
	}
	return s.orphans[id]
}

// replaceIndex writes index objects for packs, then deletes the
// superseded ones (never one just written: equal content, equal name).
// The lock is checked before each step; beforeDelete is the failpoint
// between them.
func (r *Repo) replaceIndex(ctx context.Context, l *heldLock, packs []indexPack, supersede []ID, beforeDelete string) (
	written, deleted int, err error) {
	if err := l.check(); err != nil {
		return 0, 0, err
	}
	ids, _, err := r.writeIndex(ctx, packs)
	if err != nil {
		return len(ids), 0, err
	}
	r.fp.Hit(beforeDelete)
	if err := l.check(); err != nil {
		return len(ids), 0, err
	}
	var old []ID
	for _, id := range supersede {
		if !slices.Contains(ids, id) {
			old = append(old, id)
		}
	}
	err = forEach(ctx, len(old), 8, func(ctx context.Context, i int) error {
		if err := r.b.Delete(ctx, indexKey(old[i])); err != nil {
			return fmt.Errorf("delete index %s: %w", indexKey(old[i]), err)
		}
		return nil
	})
	if err != nil {
		return len(ids), 0, err
	}
	return len(ids), len(old), nil
}
