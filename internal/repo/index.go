package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/extrasphere/extrasphere/internal/repo/backend"
)

// blobLoc is one copy of a chunk: pack number (in packIndex.packs),
// offset and length of its blob.
type blobLoc struct{ pack, off, len uint32 }

// location is a copy of a chunk with its pack resolved.
type location struct {
	pack   ID
	off, n int64
}

// packIndex is the index in memory: every chunk id of the loaded index
// objects with where its blob is. It only grows; when index objects
// disappear (prune, repair) the repository builds a new one. About 60
// bytes per chunk: 16 M chunks (1 TiB of distinct 64 KiB chunks) take
// about 1 GiB.
type packIndex struct {
	mu      sync.RWMutex     // guards every field below
	packs   []ID             // pack number -> pack id
	packNum map[ID]uint32    // pack id -> number
	chunks  map[ID]blobLoc   // first copy of each chunk
	dups    map[ID][]blobLoc // further copies (two backups stored the same chunk at once)
	objects map[ID]bool      // index objects loaded, or found unreadable
	bad     map[ID]error     // unreadable index objects and why
}

func newPackIndex() *packIndex {
	return &packIndex{packNum: map[ID]uint32{}, chunks: map[ID]blobLoc{}, dups: map[ID][]blobLoc{},
		objects: map[ID]bool{}, bad: map[ID]error{}}
}

// add merges index object obj's packs.
func (x *packIndex) add(obj ID, packs []indexPack) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.objects[obj] = true
	for _, p := range packs {
		num, ok := x.packNum[p.ID]
		if !ok {
			num = uint32(len(x.packs))
			x.packs = append(x.packs, p.ID)
			x.packNum[p.ID] = num
		}
		for _, e := range p.Entries {
			loc := blobLoc{pack: num, off: e.Off, len: e.Len}
			cur, ok := x.chunks[e.ID]
			switch {
			case !ok:
				x.chunks[e.ID] = loc
			case cur == loc || slices.Contains(x.dups[e.ID], loc):
			default:
				x.dups[e.ID] = append(x.dups[e.ID], loc)
			}
		}
	}
}

// addBad records an index object that could not be decoded.
func (x *packIndex) addBad(obj ID, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.objects[obj] = true
	x.bad[obj] = err
}

// locations returns every copy of chunk id (none when it is not indexed).
func (x *packIndex) locations(id ID) []location {
	x.mu.RLock()
	defer x.mu.RUnlock()
	first, ok := x.chunks[id]
	if !ok {
		return nil
	}
	out := make([]location, 0, 1+len(x.dups[id]))
	for _, l := range append([]blobLoc{first}, x.dups[id]...) {
		out = append(out, location{pack: x.packs[l.pack], off: int64(l.off), n: int64(l.len)})
	}
	return out
}

// has reports whether chunk id has a copy in a pack not in gone (pack
// numbers that the backend's listing lacks).
func (x *packIndex) has(id ID, gone map[uint32]bool) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	first, ok := x.chunks[id]
	if !ok {
		return false
	}
	if !gone[first.pack] {
		return true
	}
	for _, l := range x.dups[id] {
		if !gone[l.pack] {
			return true
		}
	}
	return false
}

// split returns the numbers of the indexed packs absent from present,
// and the present packs the index does not name (orphans).
func (x *packIndex) split(present map[ID]int64) (gone map[uint32]bool, orphans []ID) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	gone = map[uint32]bool{}
	for num, id := range x.packs {
		if _, ok := present[id]; !ok {
			gone[uint32(num)] = true
		}
	}
	for id := range present {
		if _, ok := x.packNum[id]; !ok {
			orphans = append(orphans, id)
		}
	}
	slices.SortFunc(orphans, func(a, b ID) int { return slices.Compare(a[:], b[:]) })
	return gone, orphans
}

// covers reports whether every object the index has loaded is in names
// (otherwise some were deleted and the index must be rebuilt), and
// returns the names it has not loaded.
func (x *packIndex) covers(names map[ID]int64) (bool, []ID) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for obj := range x.objects {
		if _, ok := names[obj]; !ok {
			return false, nil
		}
	}
	var todo []ID
	for obj := range names {
		if !x.objects[obj] {
			todo = append(todo, obj)
		}
	}
	return true, todo
}

// listKeys lists the objects under prefix whose keys parse, with their
// sizes, and returns the other keys (strays) apart.
func (r *Repo) listKeys(ctx context.Context, prefix string, parse func(string) (ID, bool)) (map[ID]int64, []string, error) {
	out := map[ID]int64{}
	var stray []string
	err := r.b.List(ctx, prefix, func(key string, size int64) error {
		if id, ok := parse(key); ok {
			out[id] = size
		} else {
			stray = append(stray, key)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return out, stray, nil
}

func (r *Repo) listPacks(ctx context.Context) (map[ID]int64, []string, error) {
	return r.listKeys(ctx, packPrefix, parsePackKey)
}

func (r *Repo) listIndex(ctx context.Context) (map[ID]int64, []string, error) {
	return r.listKeys(ctx, indexPrefix, parseIndexKey)
}

// readIndexObjects gets and decodes index objects, 4 at a time, and
// calls fn (serially) with each one's packs or with why it cannot be
// decoded (ErrCorrupt, ErrVersion). An object deleted since the listing
// is skipped; any other backend error stops the reading and is returned.
func (r *Repo) readIndexObjects(ctx context.Context, ids []ID, fn func(id ID, packs []indexPack, err error)) error {
	var mu sync.Mutex // serialises fn
	return forEach(ctx, len(ids), 4, func(ctx context.Context, i int) error {
		id := ids[i]
		obj, err := r.b.Get(ctx, indexKey(id))
		if errors.Is(err, backend.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read index %s: %w", indexKey(id), err)
		}
		packs, err := r.codec.decodeIndex(id, obj)
		if err != nil {
			err = fmt.Errorf("index object %s: %w", indexKey(id), err)
		}
		mu.Lock()
		defer mu.Unlock()
		fn(id, packs, err)
		return nil
	})
}

// refreshIndex brings the repository's index up to date with index/ and
// returns it: the index objects written since the last refresh are
// loaded into it, or, when some it loaded were deleted, a new index is
// built from all of them. Unreadable index objects are left out (their
// packs are then unindexed: backups re-index them, prune and verify
// report and repair them).
func (r *Repo) refreshIndex(ctx context.Context) (*packIndex, error) {
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	names, _, err := r.listIndex(ctx)
	if err != nil {
		return nil, err
	}
	x := r.idx.Load()
	var todo []ID
	ok := false
	if x != nil {
		ok, todo = x.covers(names)
	}
	if !ok {
		x = newPackIndex()
		for id := range names {
			todo = append(todo, id)
		}
	}
	err = r.readIndexObjects(ctx, todo, func(id ID, packs []indexPack, err error) {
		if err != nil {
			x.addBad(id, err)
		} else {
			x.add(id, packs)
		}
	})
	if err != nil {
		return nil, err
	}
	r.idx.Store(x)
	return x, nil
}

// currentIndex is the index as last refreshed (refreshed now if never).
func (r *Repo) currentIndex(ctx context.Context) (*packIndex, error) {
	if x := r.idx.Load(); x != nil {
		return x, nil
	}
	return r.refreshIndex(ctx)
}

// ChunkLocation is where one copy of a chunk is stored: Length bytes at
// Offset in the pack object Key.
type ChunkLocation struct {
	Key    string // "packs/<2 hex>/<64 hex>"
	Offset int64
	Length int64
}

// Locate returns every copy of chunk id the index lists (for tools and
// tests; Verify checks them). Errors: ErrMissingChunk when the index has
// no copy.
func (r *Repo) Locate(ctx context.Context, id ID) ([]ChunkLocation, error) {
	x, err := r.refreshIndex(ctx)
	if err != nil {
		return nil, err
	}
	var out []ChunkLocation
	for _, l := range x.locations(id) {
		out = append(out, ChunkLocation{Key: packKey(l.pack), Offset: l.off, Length: l.n})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("chunk %s is not in the index: %w", id, ErrMissingChunk)
	}
	return out, nil
}
