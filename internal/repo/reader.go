package repo

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/singleflight"
)

// ReaderOptions configure OpenVolume.
type ReaderOptions struct {
	// CacheChunks is how many decoded chunks are kept (LRU); default 32.
	CacheChunks int
}

// VolumeReader reads one volume of a backup straight from the repository
// (instant restore). It holds a read lock on the backup until Close. Safe
// for concurrent use.
type VolumeReader struct {
	r    *Repo
	m    *Manifest
	v    *Volume
	lock *heldLock
	sf   singleflight.Group // one fetch per chunk id at a time
	max  int

	mu     sync.Mutex // guards lru, items and closed
	lru    *list.List // of *cached, most recent first
	items  map[ID]*list.Element
	closed bool
}

type cached struct {
	id   ID
	data []byte // never modified once cached
}

// Extent is a run of a volume that is all zero (Zero) or holds data.
type Extent struct {
	Length int64
	Zero   bool
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
	if opts.CacheChunks <= 0 {
		opts.CacheChunks = 32
	}
	return &VolumeReader{r: r, m: m, v: v, lock: l, max: opts.CacheChunks, lru: list.New(), items: map[ID]*list.Element{}}, nil
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
// zero and data chunks, contiguous from off.
func (vr *VolumeReader) Extents(off, length int64) []Extent {
	end := min(off+length, vr.v.Size)
	if off < 0 || length <= 0 || off >= end {
		return nil
	}
	cs := int64(vr.v.ChunkSize)
	var out []Extent
	for pos := off; pos < end; {
		i := pos / cs
		n := min((i+1)*cs, end) - pos
		z := vr.v.Chunks[i].IsNull()
		if k := len(out) - 1; k >= 0 && out[k].Zero == z {
			out[k].Length += n
		} else {
			out = append(out, Extent{Length: n, Zero: z})
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
	vr.mu.Lock()
	closed := vr.closed
	vr.mu.Unlock()
	if closed {
		return fmt.Errorf("read volume %s of backup %s: %w", vr.v.Name, vr.m.ID, ErrClosed)
	}
	cs := int64(vr.v.ChunkSize)
	for len(p) > 0 {
		i := int(off / cs)
		in := off - int64(i)*cs
		n := int(min(int64(len(p)), cs-in))
		if vr.v.Chunks[i].IsNull() {
			clear(p[:n])
		} else {
			data, err := vr.chunk(ctx, i)
			if err != nil {
				return err
			}
			copy(p[:n], data[in:])
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// chunk returns chunk i's plaintext from the cache or the repository.
func (vr *VolumeReader) chunk(ctx context.Context, i int) ([]byte, error) {
	id := vr.v.Chunks[i]
	vr.mu.Lock()
	if e, ok := vr.items[id]; ok {
		vr.lru.MoveToFront(e)
		vr.mu.Unlock()
		return e.Value.(*cached).data, nil
	}
	vr.mu.Unlock()
	// The fetch outlives a caller that gives up, so a cancelled request
	// does not fail the others waiting for the same chunk.
	ch := vr.sf.DoChan(string(id[:]), func() (any, error) {
		data, err := vr.r.volumeChunk(context.WithoutCancel(ctx), vr.m, vr.v, i, nil)
		if err != nil {
			return nil, err
		}
		vr.put(id, data)
		return data, nil
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]byte), nil
	}
}

func (vr *VolumeReader) put(id ID, data []byte) {
	vr.mu.Lock()
	defer vr.mu.Unlock()
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
