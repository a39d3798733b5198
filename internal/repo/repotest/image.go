package repotest

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
)

// image is a disk image in memory made of random chunks, zero chunks and
// repeated chunks, with a short last chunk. It is a repo.Source that
// records which offsets were read.
type image struct {
	mu    sync.Mutex // guards data (writes between backups), reads and hook
	data  []byte
	reads map[int64]int // offset -> times read
	hook  func(off int64) error
	rng   *rand.Rand
}

// newImage makes size bytes from seed: chunk i is zero when i%5 == 1, a
// copy of one fixed pattern when i%7 == 3, random otherwise.
func newImage(seed uint64, size int) *image {
	im := &image{data: make([]byte, size), reads: map[int64]int{}, rng: rand.New(rand.NewPCG(seed, seed+1))}
	pattern := make([]byte, ChunkSize)
	im.fill(pattern)
	for i := 0; i*ChunkSize < size; i++ {
		c := im.data[i*ChunkSize : min((i+1)*ChunkSize, size)]
		switch {
		case i%5 == 1:
		case i%7 == 3:
			copy(c, pattern)
		default:
			im.fill(c)
		}
	}
	return im
}

func (im *image) fill(p []byte) {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], im.rng.Uint64())
	}
	for ; i < len(p); i++ {
		p[i] = byte(im.rng.Uint32())
	}
}

// Size implements repo.Source.
func (im *image) Size() int64 { return int64(len(im.data)) }

// ReadAt implements repo.Source.
func (im *image) ReadAt(ctx context.Context, p []byte, off int64) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.hook != nil {
		if err := im.hook(off); err != nil {
			return err
		}
	}
	if off < 0 || off+int64(len(p)) > int64(len(im.data)) {
		return fmt.Errorf("read [%d, +%d) past the end %d", off, len(p), len(im.data))
	}
	im.reads[off]++
	copy(p, im.data[off:])
	return nil
}

// snapshot copies the current content.
func (im *image) snapshot() []byte {
	im.mu.Lock()
	defer im.mu.Unlock()
	return append([]byte(nil), im.data...)
}

// resetReads forgets the reads so far.
func (im *image) resetReads() {
	im.mu.Lock()
	defer im.mu.Unlock()
	clear(im.reads)
}

// readOffsets returns the offsets read since resetReads, and whether any
// was read twice.
func (im *image) readOffsets() (map[int64]bool, bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	out, twice := map[int64]bool{}, false
	for off, n := range im.reads {
		out[off] = true
		twice = twice || n > 1
	}
	return out, twice
}

// write changes [off, off+n) to random bytes (or zeros) and returns the range.
func (im *image) write(off, n int64, zero bool) (int64, int64) {
	im.mu.Lock()
	defer im.mu.Unlock()
	p := im.data[off : off+n]
	if zero {
		clear(p)
	} else {
		im.fill(p)
	}
	return off, n
}

// memTarget is an io.WriterAt over a byte slice; restore workers write
// disjoint ranges, so no lock is needed.
type memTarget []byte

func (m memTarget) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write [%d, +%d) past the end %d", off, len(p), len(m))
	}
	return copy(m[off:], p), nil
}
