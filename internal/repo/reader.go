package repo

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"github.com/extrasphere/extrasphere/internal/blockdev"
)

// ReaderOptions configure OpenVolume.
type ReaderOptions struct {
	// CacheChunks is how many decoded chunks are kept (LRU); default
	// 16 MiB worth, at least 32.
	CacheChunks int
	// ReadAhead: when reads go sequentially, this many bytes past a read
	// are fetched with it (in the same ranged requests when the chunks
	// are adjacent in their pack); default 1 MiB, negative disables it.
	ReadAhead int
}

// VolumeReader reads one volume of a backup straight from the repository
// (instant restore). It holds a read lock on the backup until Close. Safe
// for concurrent use.
type VolumeReader struct {
	r     *Repo
	m     *Manifest
	v     *Volume
	lock  *heldLock
	max   int // cache capacity in chunks
	ahead int // read-ahead in chunks

	mu       sync.Mutex // guards lru, items, inflight, next and closed
	lru      *list.List // of *cached, most recent first
	items    map[ID]*list.Element
	inflight map[ID]*flight // chunks being fetched
	next     int            // the chunk after the last read: a read starting there is sequential
	closed   bool
}

type cached struct {
	id   ID
	data []byte // never modified once cached
}

// flight is one chunk being fetched; done is closed when data or err is set.
type flight struct {
	done chan struct{}
	data []byte
	err  error
}

// OpenVolume opens volume of backup m for reading. Errors: ErrNotFound
// (no such volume, or the backup was forgotten), ErrLocked.
func (r *Repo) OpenVolume(ctx context.Context, m *Manifest, volume string, opts ReaderOptions) (*VolumeReader, error) {
	v, err := m.Volume(volume)
	if err != nil {
		return nil, err
	}
	l, err := r.lockBackupForRead(ctx, m.ID, "serve")
	if err != nil {
		return nil, fmt.Errorf("open %s of backup %s: %w", volume, m.ID, err)
	}
	if _, err := r.refreshIndex(ctx); err != nil {
		l.release(ctx)
		return nil, fmt.Errorf("open %s of backup %s: %w", volume, m.ID, err)
	}
	if opts.CacheChunks <= 0 {
		opts.CacheChunks = max(32, (16<<20)/v.ChunkSize)
	}
	if opts.ReadAhead == 0 {
		opts.ReadAhead = 1 << 20
	}
	ahead := max(0, opts.ReadAhead/v.ChunkSize)
	return &VolumeReader{r: r, m: m, v: v, lock: l, max: max(opts.CacheChunks, ahead+1), ahead: ahead,
		lru: list.New(), items: map[ID]*list.Element{}, inflight: map[ID]*flight{}, next: -1}, nil
}

// Size is the volume's size in bytes.
func (vr *VolumeReader) Size() int64 { return vr.v.Size }

// ChunkSize is the volume's chunk size in bytes.
func (vr *VolumeReader) ChunkSize() int { return vr.v.ChunkSize }

// IsZero reports whether chunk i is all zero (stored as the null id).
func (vr *VolumeReader) IsZero(i int) bool {
	return i >= 0 && i < len(vr.v.Chunks) && vr.v.Chunks[i].IsNull()
}

// Extents describes [off, off+length) clipped to the volume as runs of
// zero chunks (blockdev.StateZero) and data chunks (no flags), contiguous
// from off.
func (vr *VolumeReader) Extents(off, length int64) []blockdev.Extent {
	end := min(off+length, vr.v.Size)
	if off < 0 || length <= 0 || off >= end {
		return nil
	}
	cs := int64(vr.v.ChunkSize)
	var out []blockdev.Extent
	for pos := off; pos < end; {
		i := pos / cs
		n := min((i+1)*cs, end) - pos
		var f uint32
		if vr.v.Chunks[i].IsNull() {
			f = blockdev.StateZero
		}
		if k := len(out) - 1; k >= 0 && out[k].Flags == f {
			out[k].Length += n
		} else {
			out = append(out, blockdev.Extent{Length: n, Flags: f})
		}
		pos += n
	}
	return out
}

// ReadAt fills p with the volume's bytes at off. Every chunk is verified;
// a missing or corrupt one fails the read with a *ChunkError.
func (vr *VolumeReader) ReadAt(ctx context.Context, p []byte, off int64) error {
	if off < 0 || int64(len(p)) > vr.v.Size-off {
		return fmt.Errorf("read [%d, +%d) of a %d-byte volume: %w", off, len(p), vr.v.Size, ErrInvalid)
	}
	if len(p) == 0 {
		return nil
	}
	cs := int64(vr.v.ChunkSize)
	first, last := int(off/cs), int((off+int64(len(p))-1)/cs)
	data, err := vr.chunks(ctx, first, last)
	if err != nil {
		return err
	}
	for i := first; i <= last; i++ {
		in := max(off-int64(i)*cs, 0)
		n := int(min(int64(len(p)), cs-in))
		if id := vr.v.Chunks[i]; id.IsNull() {
			clear(p[:n])
		} else {
			copy(p[:n], data[id][in:])
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// chunks returns the plaintext of the data chunks first..last, from the
// cache, from fetches already running, or fetched now in one batch
// (coalesced per pack) together with the read-ahead.
func (vr *VolumeReader) chunks(ctx context.Context, first, last int) (map[ID][]byte, error) {
	out := map[ID][]byte{}
	type waiter struct {
		i int
		f *flight
	}
	var wait []waiter // by chunk index
	var own []ID
	owned := map[ID]*flight{}
	vr.mu.Lock()
	if vr.closed {
		vr.mu.Unlock()
		return nil, fmt.Errorf("read volume %s of backup %s: %w", vr.v.Name, vr.m.ID, ErrClosed)
	}
	take := func(i int, need bool) {
		id := vr.v.Chunks[i]
		if id.IsNull() {
			return
		}
		if e, ok := vr.items[id]; ok {
			if need {
				vr.lru.MoveToFront(e)
				out[id] = e.Value.(*cached).data
			}
			return
		}
		f, ok := vr.inflight[id]
		if !ok {
			f = &flight{done: make(chan struct{})}
			vr.inflight[id] = f
			owned[id] = f
			own = append(own, id)
		}
		if need {
			wait = append(wait, waiter{i, f})
		}
	}
	for i := first; i <= last; i++ {
		take(i, true)
	}
	if first == vr.next && len(own) > 0 {
		for i := last + 1; i < min(last+1+vr.ahead, len(vr.v.Chunks)); i++ {
			take(i, false)
		}
	}
	vr.next = last + 1
	vr.mu.Unlock()
	if len(own) > 0 {
		// The fetch outlives a caller that gives up, so a cancelled
		// request does not fail the others waiting for the same chunks.
		go vr.fetch(context.WithoutCancel(ctx), own, owned)
	}
	for _, w := range wait {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.f.done:
		}
		id := vr.v.Chunks[w.i]
		if w.f.err != nil {
			return nil, &ChunkError{Backup: vr.m.ID, Volume: vr.v.Name, Offset: int64(w.i) * int64(vr.v.ChunkSize), ID: id, Err: w.f.err}
		}
		out[id] = w.f.data
	}
	for i := first; i <= last; i++ { // the id fixes the content; the manifest, the length
		if id := vr.v.Chunks[i]; !id.IsNull() && len(out[id]) != vr.v.ChunkLen(i) {
			return nil, &ChunkError{Backup: vr.m.ID, Volume: vr.v.Name, Offset: int64(i) * int64(vr.v.ChunkSize), ID: id,
				Err: fmt.Errorf("chunk of %d bytes where the volume has %d: %w", len(out[id]), vr.v.ChunkLen(i), ErrCorrupt)}
		}
	}
	return out, nil
}

// fetch reads ids and completes their flights.
func (vr *VolumeReader) fetch(ctx context.Context, ids []ID, flights map[ID]*flight) {
	fails, err := vr.r.fetchChunks(ctx, ids, func(id ID, p []byte) error {
		f := flights[id]
		if len(p) > vr.v.ChunkSize {
			f.err = fmt.Errorf("chunk of %d bytes, over the chunk size %d: %w", len(p), vr.v.ChunkSize, ErrCorrupt)
			return nil
		}
		f.data = append([]byte(nil), p...)
		return nil
	})
	vr.mu.Lock()
	defer vr.mu.Unlock()
	for _, id := range ids {
		f := flights[id]
		switch {
		case err != nil:
			f.data, f.err = nil, err
		case fails[id] != nil:
			f.err = fails[id]
		}
		if f.err == nil && !vr.closed {
			vr.put(id, f.data)
		}
		delete(vr.inflight, id)
		close(f.done)
	}
}

// put caches a chunk. Called with mu held.
func (vr *VolumeReader) put(id ID, data []byte) {
	if _, ok := vr.items[id]; ok {
		return
	}
	vr.items[id] = vr.lru.PushFront(&cached{id: id, data: data})
	for vr.lru.Len() > vr.max {
		e := vr.lru.Back()
		vr.lru.Remove(e)
		delete(vr.items, e.Value.(*cached).id)
	}
}

// Close drops the cache and releases the read lock. Idempotent.
func (vr *VolumeReader) Close() error {
	vr.mu.Lock()
	vr.closed = true
	vr.lru.Init()
	clear(vr.items)
	vr.mu.Unlock()
	return vr.lock.release(context.Background())
}
