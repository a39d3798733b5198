package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/memdev"
)

// errDown is what the fake replica answers while it is down.
var errDown = errors.New("replica down (test)")

// replica is a fake remote: one memdev that connections reach while it is
// up. Down fails every connection's requests and refuses new ones.
type replica struct {
	dev *memdev.Device
	// durable is what dev held at its last successful flush: what a
	// crash of the replica keeps (lose).
	durable *memdev.Device
	// stall holds writes until it is closed (nil: no stall).
	stall     atomic.Pointer[chan struct{}]
	flushHook atomic.Pointer[func() error] // runs first in every flush; an error fails it
	down      atomic.Bool
	refuse    atomic.Bool
	hang      atomic.Bool // requests wait for their context: a black-holed link
	dials     atomic.Int64
	writes    atomic.Int64 // bytes written through any connection
	fuaSeen   atomic.Int64
}

func newReplica(size int64) *replica {
	return &replica{dev: memdev.New(size, false), durable: memdev.New(size, false)}
}

// lose plays a crash of the replica: what it did not flush is gone.
func (r *replica) lose(t *testing.T) {
	t.Helper()
	p := make([]byte, r.dev.Size())
	if err := r.durable.ReadAt(t.Context(), p, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.dev.WriteAt(t.Context(), p, 0, 0); err != nil {
		t.Fatal(err)
	}
}

// waitStall holds a write while a stall is set.
func (r *replica) waitStall(ctx context.Context) error {
	if c := r.stall.Load(); c != nil {
		select {
		case <-*c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *replica) dial(ctx context.Context) (blockdev.Device, error) {
	r.dials.Add(1)
	if r.refuse.Load() {
		return nil, fmt.Errorf("export gone: %w", ErrRefused)
	}
	if r.down.Load() || r.hang.Load() {
		return nil, errDown
	}
	return &conn{r: r}, nil
}

// conn is one connection to the fake replica; once the replica went down
// it stays failed, like a broken TCP connection.
type conn struct {
	r      *replica
	broken atomic.Bool
}

func (c *conn) check() error {
	if c.r.hang.Load() {
		return errDown
	}
	if c.r.down.Load() {
		c.broken.Store(true)
	}
	if c.broken.Load() {
		return errDown
	}
	return nil
}

func (c *conn) Size() int64         { return c.r.dev.Size() }
func (c *conn) Caps() blockdev.Caps { return c.r.dev.Caps() }
func (c *conn) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := c.check(); err != nil {
		return err
	}
	return c.r.dev.ReadAt(ctx, p, off)
}
func (c *conn) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	if c.r.hang.Load() {
		<-ctx.Done()
		c.broken.Store(true)
		return ctx.Err()
	}
	if err := c.check(); err != nil {
		return err
	}
	if err := c.r.waitStall(ctx); err != nil {
		return err
	}
	if f&blockdev.FUA != 0 {
		c.r.fuaSeen.Add(1)
	}
	c.r.writes.Add(int64(len(p)))
	return c.r.dev.WriteAt(ctx, p, off, f)
}
func (c *conn) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	if err := c.check(); err != nil {
		return err
	}
	if err := c.r.waitStall(ctx); err != nil {
		return err
	}
	c.r.writes.Add(n)
	return c.r.dev.WriteZeroes(ctx, off, n, f)
}
func (c *conn) Trim(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	if err := c.check(); err != nil {
		return err
	}
	return c.r.dev.Trim(ctx, off, n, f)
}
func (c *conn) Flush(ctx context.Context) error {
	if err := c.check(); err != nil {
		return err
	}
	if h := c.r.flushHook.Load(); h != nil {
		if err := (*h)(); err != nil {
			return err
		}
	}
	if err := c.r.dev.Flush(ctx); err != nil { // counted: tests check that flushes arrive
		return err
	}
	// What dev holds is now durable (a copy: this fake replica is small).
	p := make([]byte, c.r.dev.Size())
	if err := c.r.dev.ReadAt(ctx, p, 0); err != nil {
		return err
	}
	return c.r.durable.WriteAt(ctx, p, 0, 0)
}
func (c *conn) BlockStatus(ctx context.Context, meta string, off, n int64) ([]blockdev.Extent, error) {
	return c.r.dev.BlockStatus(ctx, meta, off, n)
}
func (c *conn) Close() error { c.broken.Store(true); return nil }

// dirtyLog is an in-memory DirtyLog that counts what it is asked.
type dirtyLog struct {
	mu      sync.Mutex
	set     map[int64]bool // chunk indexes
	rotates int
}

func newDirtyLog() *dirtyLog { return &dirtyLog{set: map[int64]bool{}} }

func (j *dirtyLog) Mark(off, n int64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for c := off / ChunkSize; c <= (off+n-1)/ChunkSize; c++ {
		j.set[c] = true
	}
	return nil
}

func (j *dirtyLog) Rotate(ok func() bool) ([]blockdev.Range, bool, error) {
	if !ok() {
		return nil, false, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []blockdev.Range
	for c := range j.set {
		out = append(out, blockdev.Range{Off: c * ChunkSize, Len: ChunkSize})
	}
	j.set = map[int64]bool{}
	j.rotates++
	return out, true, nil
}

func (j *dirtyLog) Ranges() []blockdev.Range {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []blockdev.Range
	for c := range j.set {
		out = append(out, blockdev.Range{Off: c * ChunkSize, Len: ChunkSize})
	}
	return out
}

// tracked plays the CBT tracker above the filter: it marks the dirty log
// before passing a write down, as the real stack does.
type tracked struct {
	blockdev.Device
	j *dirtyLog
}

func (t *tracked) WriteAt(ctx context.Context, p []byte, off int64, f blockdev.WriteFlags) error {
	t.j.Mark(off, int64(len(p)))
	return t.Device.WriteAt(ctx, p, off, f)
}

func (t *tracked) WriteZeroes(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	t.j.Mark(off, n)
	return t.Device.WriteZeroes(ctx, off, n, f)
}

func (t *tracked) Trim(ctx context.Context, off, n int64, f blockdev.WriteFlags) error {
	t.j.Mark(off, n)
	return t.Device.Trim(ctx, off, n, f)
}

// setup is a volume of size bytes (local memdev, random content in the
// first half) mirrored to a fresh fake replica.
type setup struct {
	local *memdev.Device
	rep   *replica
	j     *dirtyLog
	m     *Mirror
	dev   blockdev.Device // tracker over filter over local
}

func newSetup(t *testing.T, size int64, policy Policy, synced bool, tune ...func(*Options)) *setup {
	t.Helper()
	s := &setup{local: memdev.New(size, false), rep: newReplica(size), j: newDirtyLog()}
	fill(t, s.local, 0, size/2, 1)
	var dirty []blockdev.Range
	if !synced {
		dirty = []blockdev.Range{{Off: 0, Len: size}}
	}
	opts := Options{Volume: "v", Size: size, Policy: policy, Dial: s.rep.dial, DirtyLog: s.j,
		Dirty: dirty, Synced: synced, Workers: 2, CopyBytes: 256 << 10,
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Checkpoint: 50 * time.Millisecond}
	for _, f := range tune {
		f(&opts)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.m = m
	s.dev = &tracked{Device: m.Filter(s.local), j: s.j}
	t.Cleanup(func() { m.Close(context.Background()) })
	return s
}

func fill(t *testing.T, d blockdev.Device, off, n int64, seed uint64) {
	t.Helper()
	p := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	if err := d.WriteAt(t.Context(), p, off, 0); err != nil {
		t.Fatal(err)
	}
}

// waitState polls until the mirror reaches want.
func waitState(t *testing.T, m *Mirror, want State) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m.Status().State == want {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("mirror state %s, want %s (status %+v)", m.Status().State, want, m.Status())
}

// sameContent fails unless a and b hold the same bytes.
func sameContent(t *testing.T, a, b blockdev.Device) {
	t.Helper()
	pa, pb := make([]byte, a.Size()), make([]byte, b.Size())
	if err := a.ReadAt(t.Context(), pa, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadAt(t.Context(), pb, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pa, pb) {
		for i := range pa {
			if pa[i] != pb[i] {
				t.Fatalf("replica differs from the volume at byte %d (chunk %d)", i, int64(i)/ChunkSize)
			}
		}
	}
}

// writer runs random writes (4 KiB..256 KiB) on d until stop, recording
// the first error.
func writer(t *testing.T, d blockdev.Device, seed uint64, stop <-chan struct{}, wg *sync.WaitGroup, acked *atomic.Int64) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(seed, 7))
	size := d.Size()
	for {
		select {
		case <-stop:
			return
		default:
		}
		n := int64(4096 * (1 + rng.IntN(64)))
		off := rng.Int64N((size-n)/4096) * 4096
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		var err error
		switch rng.IntN(10) {
		case 0:
			err = d.WriteZeroes(context.Background(), off, n, 0)
		case 1:
			err = d.Trim(context.Background(), off, n, 0)
		case 2:
			err = d.Flush(context.Background())
		default:
			err = d.WriteAt(context.Background(), p, off, blockdev.WriteFlags(rng.IntN(2))&blockdev.FUA)
		}
		if err != nil {
			t.Errorf("write at %d+%d: %v", off, n, err)
			return
		}
		acked.Add(1)
	}
}
